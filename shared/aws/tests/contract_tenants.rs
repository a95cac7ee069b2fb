//! The engine's `TenantStore` and `BindingStore` contracts against `DynamoTenants` /
//! `DynamoBindings` on moto, each test on its own fresh table.

mod common;

use m365_aws::schema::{BINDINGS, TENANTS};
use m365_aws::{DynamoBindings, DynamoTenants};

mod tenants {
    m365_engine::contract_tests!(
        tenants,
        crate::common::on_table!(super::TENANTS, super::DynamoTenants::new)
    );
}

mod bindings {
    m365_engine::contract_tests!(
        bindings,
        crate::common::on_table!(super::BINDINGS, super::DynamoBindings::new)
    );
}
