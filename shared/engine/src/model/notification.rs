//! The welcome notification sent when a user is bound (R-BIND-4). It never holds a password
//! (R-SAFE-2): the employee signs in with the directory password they already know.

use serde::{Deserialize, Serialize};

use super::{Email, M365ObjectId, OperationId, TenantId, UserId};

/// "Your Microsoft 365 account is ready": what the notifications queue receives; the `notify`
/// function delivers it as an email ([`crate::usecase::notify::DeliverWelcome`], R-NOT-1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WelcomeNotification {
    /// The directory user.
    pub user_id: UserId,
    /// Where to send it (the directory email).
    pub email: Email,
    /// How to greet them.
    pub display_name: String,
    /// The tenant the account lives in.
    pub tenant_id: TenantId,
    /// The account's sign-in name (the UPN, equal to the email, R-BIND-2).
    pub user_principal_name: Email,
    /// The account.
    pub m365_object_id: M365ObjectId,
    /// The bind operation (consumers may de-duplicate on it).
    pub operation_id: OperationId,
}
