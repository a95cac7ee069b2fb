//! The engine's `TenantStore` and `BindingStore` contracts against `DynamoTenants` /
//! `DynamoBindings` on moto, each test on its own fresh table.

mod common;

use m365_aws::schema::{BINDINGS, TENANTS};
use m365_aws::{DynamoBindings, DynamoTenants};

common::contracts_on_tables!(
    tenants: TENANTS => DynamoTenants::new,
    bindings: BINDINGS => DynamoBindings::new,
);
