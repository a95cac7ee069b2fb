//! The engine's `TenantStore`, `BindingStore`, `LicenseSettingsStore` and `AlertIncidents`
//! contracts against `DynamoTenants` / `DynamoBindings` / `DynamoLicenseSettings` /
//! `DynamoAlertIncidents` on moto, each test on its own fresh table.

mod common;

use m365_aws::schema::{BINDINGS, TENANTS};
use m365_aws::{DynamoAlertIncidents, DynamoBindings, DynamoLicenseSettings, DynamoTenants};

common::contracts_on_tables!(
    tenants: TENANTS => DynamoTenants::new,
    bindings: BINDINGS => DynamoBindings::new,
    license_settings: TENANTS => DynamoLicenseSettings::new,
    alert_incidents: TENANTS => DynamoAlertIncidents::new,
);
