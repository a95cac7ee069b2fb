//! Directory audit records (graph-spec §10): one `directoryAudit` per successful write, initiated
//! by the calling app (app-only tokens) or the signed-in user (delegated tokens).

use serde_json::{Value, json};

use crate::graph::Caller;
use crate::state::State;

/// What a write did, for its audit record.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    /// `UserManagement`, `GroupManagement`, ...
    pub category: &'a str,
    /// E.g. "Add user", "Add member to group".
    pub activity: &'a str,
    /// `Add`, `Update`, `Delete`, `Assign`, `Unassign`.
    pub operation_type: &'a str,
    /// `targetResources[]`.
    pub targets: Vec<Value>,
}

/// A `targetResource` for a user.
#[must_use]
pub fn user_target(id: &str, upn: &str, modified: Vec<Value>) -> Value {
    json!({"id": id, "displayName": null, "type": "User", "userPrincipalName": upn,
           "groupType": null, "modifiedProperties": modified})
}

/// A `targetResource` for a group (`groupType` `azureAD`; [`record`] switches it to
/// `unifiedGroups` for Microsoft 365 groups, per the CSDL enum `microsoft.graph.groupType`).
#[must_use]
pub fn group_target(id: &str, display_name: &str) -> Value {
    json!({"id": id, "displayName": display_name, "type": "Group", "userPrincipalName": null,
           "groupType": "azureAD", "modifiedProperties": []})
}

/// A `modifiedProperty` with JSON-encoded old/new values (e.g. `"[true]"`, INF).
#[must_use]
pub fn modified(name: &str, old: Option<&Value>, new: &Value) -> Value {
    let mut display = name.to_owned();
    if let Some(first) = display.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let encode = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "[]".to_owned(),
        Some(v) => format!("[{v}]"),
    };
    json!({"displayName": display, "oldValue": encode(old), "newValue": encode(Some(new))})
}

/// Appends an audit record to the caller's tenant.
pub fn record(state: &mut State, caller: &Caller, event: AuditEvent<'_>) {
    let now = state.clock.now();
    let app_name = state
        .applications
        .get(&caller.claims.app_id)
        .map(|a| a.display_name.clone());
    let Some(tenant) = state.tenants.get_mut(caller.tenant_id()) else {
        return;
    };
    let initiated_by = match &caller.claims.user_upn {
        Some(upn) => {
            let user = tenant.active_user_by_upn(upn);
            json!({"user": {
                "id": user.map(|u| u.id.clone()),
                "displayName": user.map(|u| u.display_name().to_owned()),
                "userPrincipalName": upn,
                "ipAddress": "127.0.0.1"
            }, "app": null})
        }
        None => {
            let sp = tenant
                .app_grants
                .get(&caller.claims.app_id)
                .map(|g| g.service_principal_id.clone());
            json!({"user": null, "app": {
                "appId": caller.claims.app_id,
                "displayName": app_name,
                "servicePrincipalId": sp,
                "servicePrincipalName": null
            }})
        }
    };
    // Graph shows seven fractional digits (`2025-01-06T12:25:58.1234567Z`).
    let mut targets = event.targets;
    for target in &mut targets {
        let unified = target["type"] == "Group"
            && target["id"]
                .as_str()
                .and_then(|id| tenant.groups.get(id))
                .is_some_and(|g| {
                    g.properties
                        .get("groupTypes")
                        .and_then(Value::as_array)
                        .is_some_and(|t| t.iter().any(|v| v == "Unified"))
                });
        if unified {
            target["groupType"] = json!("unifiedGroups");
        }
    }
    let at = format!(
        "{}.{:07}Z",
        now.format("%Y-%m-%dT%H:%M:%S"),
        chrono::Timelike::nanosecond(&now) % 1_000_000_000 / 100
    );
    tenant.audits.push(json!({
        "id": format!("Directory_{}", uuid::Uuid::new_v4()),
        "category": event.category,
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "result": "success",
        "resultReason": "",
        "activityDisplayName": event.activity,
        "activityDateTime": at,
        "loggedByService": "Core Directory",
        "operationType": event.operation_type,
        "initiatedBy": initiated_by,
        "targetResources": targets,
        "additionalDetails": [],
    }));
}
