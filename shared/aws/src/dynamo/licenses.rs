//! Licence settings (R-LIC-1) on the tenants table: a tenant's settings at
//! `SETTINGS#<tenant id>` / `SETTINGS` and a bound group's licences at
//! `GROUP_LICENSES#<group id>` / `GROUP_LICENSES`, each as a `doc` (the engine's model as JSON).
//! Writes are plain puts (last write wins: an admin's settings replace the earlier ones).

use crate::OnHeap;

use aws_sdk_dynamodb::Client;
use m365_engine::error::Error;
use m365_engine::model::{GroupId, GroupLicenses, TenantId, TenantSettings};
use m365_engine::ports::LicenseSettingsStore;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{DOC, Item, Table, doc, dynamo_error, from_doc, s};
use crate::schema::{PK, SK};

const SETTINGS: &str = "SETTINGS";
const GROUP_LICENSES: &str = "GROUP_LICENSES";

/// [`LicenseSettingsStore`] on the tenants table.
#[derive(Debug, Clone)]
pub struct DynamoLicenseSettings {
    table: Table,
}

impl DynamoLicenseSettings {
    /// A store on `table` (a table created from [`crate::schema::TENANTS`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }

    async fn read<T: DeserializeOwned>(&self, kind: &str, id: &str) -> Result<Option<T>, Error> {
        self.table
            .get_item(format!("{kind}#{id}"), kind)
            .await?
            .map(|item| from_doc(&item))
            .transpose()
    }

    async fn write<T: Serialize>(&self, kind: &str, id: &str, value: &T) -> Result<(), Error> {
        let item = Item::from([
            (PK.to_owned(), s(format!("{kind}#{id}"))),
            (SK.to_owned(), s(kind)),
            (DOC.to_owned(), doc(value)?),
        ]);
        self.table
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(item))
            .send()
            .on_heap()
            .await
            .map_err(dynamo_error)?;
        Ok(())
    }
}

impl LicenseSettingsStore for DynamoLicenseSettings {
    async fn settings(&self, tenant: &TenantId) -> Result<Option<TenantSettings>, Error> {
        self.read(SETTINGS, tenant.as_str()).await
    }

    async fn put_settings(&self, settings: &TenantSettings) -> Result<(), Error> {
        self.write(SETTINGS, settings.tenant_id.as_str(), settings)
            .await
    }

    async fn group_licenses(&self, group: &GroupId) -> Result<Option<GroupLicenses>, Error> {
        self.read(GROUP_LICENSES, group.as_str()).await
    }

    async fn put_group_licenses(&self, licenses: &GroupLicenses) -> Result<(), Error> {
        self.write(GROUP_LICENSES, licenses.group_id.as_str(), licenses)
            .await
    }
}
