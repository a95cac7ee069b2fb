//! The engine's `TenantStore` and `BindingStore` contracts against `DynamoTenants` /
//! `DynamoBindings` on moto, each test on its own fresh table.

mod common;

use m365_aws::schema::{BINDINGS, TENANTS};
use m365_aws::{DynamoBindings, DynamoTenants};

mod tenants {
    use super::*;

    m365_engine::contract_tests!(tenants, {
        let Some(config) = common::aws().await else {
            return;
        };
        let (client, table) = common::table(&config, &TENANTS).await;
        DynamoTenants::new(client, table)
    });
}

mod bindings {
    use super::*;

    m365_engine::contract_tests!(bindings, {
        let Some(config) = common::aws().await else {
            return;
        };
        let (client, table) = common::table(&config, &BINDINGS).await;
        DynamoBindings::new(client, table)
    });
}
