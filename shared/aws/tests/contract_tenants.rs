//! The engine's `TenantStore`, `BindingStore` and `LicenseSettingsStore` contracts against
//! `DynamoTenants` / `DynamoBindings` / `DynamoLicenseSettings` on moto, each test on its own fresh table.

mod common;

use m365_aws::schema::{BINDINGS, TENANTS};
use m365_aws::{DynamoBindings, DynamoLicenseSettings, DynamoTenants};

common::contracts_on_tables!(
    tenants: TENANTS => DynamoTenants::new,
    bindings: BINDINGS => DynamoBindings::new,
    license_settings: TENANTS => DynamoLicenseSettings::new,
);
