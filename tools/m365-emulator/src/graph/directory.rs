//! Tenant-level resources (graph-spec §8–§10): domains (managed/federated), organization,
//! subscribedSkus, `assignLicense` (usage-location and seat checks), licenseDetails and
//! directoryAudits.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::odata::{self, Resource, param};
use super::users::{RawQuery, find, tenant_mut, tenant_ref};
use super::{Caller, base_url, json_body, odata as odata_response, perm};
use crate::AppState;
use crate::audit::{self, AuditEvent};
use crate::error::GraphError;
use crate::state::{AuthenticationType, Domain, ObjectKind, Sku, Tenant};

fn domain_json(d: &Domain) -> Value {
    let auth = match d.authentication_type {
        AuthenticationType::Managed => "Managed",
        AuthenticationType::Federated => "Federated",
    };
    let services: Vec<&str> = if d.is_verified {
        vec!["Email", "OfficeCommunicationsOnline"]
    } else {
        Vec::new()
    };
    json!({
        "authenticationType": auth, "availabilityStatus": null, "id": d.name, "isAdminManaged": true,
        "isDefault": d.is_default, "isInitial": d.is_initial, "isRoot": d.is_verified,
        "isVerified": d.is_verified, "passwordNotificationWindowInDays": 14,
        // "never expires" value assumed (§13.10).
        "passwordValidityPeriodInDays": 2_147_483_647_i64, "state": null,
        "supportedServices": services
    })
}

/// `GET /domains` (graph-spec §8.1).
///
/// # Errors
/// 403 without `Domain.Read.All`/`Directory.Read.All`.
pub async fn domains(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::DOMAINS_READ)?;
    let state = app.lock();
    let tenant = tenant_ref(&state, &caller)?;
    let body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#domains", base_url(&headers)),
        "value": tenant.domains.iter().map(domain_json).collect::<Vec<_>>()
    });
    Ok(odata_response(StatusCode::OK, &body))
}

/// `GET /domains/{id}`.
///
/// # Errors
/// 403 without permission, 404 for an unknown domain.
pub async fn domain(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::DOMAINS_READ)?;
    let state = app.lock();
    let tenant = tenant_ref(&state, &caller)?;
    let d = tenant
        .domain(&key)
        .ok_or_else(|| GraphError::not_found(&key))?;
    let mut body = domain_json(d);
    body["@odata.context"] = json!(format!(
        "{}/v1.0/$metadata#domains/$entity",
        base_url(&headers)
    ));
    Ok(odata_response(StatusCode::OK, &body))
}

/// `GET /organization` (graph-spec §3.9).
///
/// # Errors
/// 403 without `Organization.Read.All`/`Directory.Read.All`.
pub async fn organization(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    // Any directory-reading permission can read the organization object (INF).
    if !caller.has_any(perm::ORG_READ) && !caller.has_any(perm::USERS_READ) {
        return Err(GraphError::forbidden());
    }
    let state = app.lock();
    let tenant = tenant_ref(&state, &caller)?;
    let verified: Vec<Value> = tenant
        .domains
        .iter()
        .filter(|d| d.is_verified)
        .map(|d| {
            json!({
                "capabilities": "Email, OfficeCommunicationsOnline",
                "isDefault": d.is_default, "isInitial": d.is_initial, "name": d.name,
                "type": match d.authentication_type { AuthenticationType::Managed => "Managed", AuthenticationType::Federated => "Federated" }
            })
        })
        .collect();
    let body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#organization", base_url(&headers)),
        "value": [{
            "id": tenant.id, "deletedDateTime": null, "displayName": tenant.display_name,
            "createdDateTime": crate::state::graph_timestamp(tenant.created_at),
            "countryLetterCode": "US", "preferredLanguage": "en", "tenantType": "AAD",
            "businessPhones": [], "city": null, "country": null, "postalCode": null, "state": null,
            "street": null, "technicalNotificationMails": [], "securityComplianceNotificationMails": [],
            "securityComplianceNotificationPhones": [], "marketingNotificationEmails": [],
            "onPremisesSyncEnabled": null, "onPremisesLastSyncDateTime": null,
            "assignedPlans": [], "provisionedPlans": [], "privacyProfile": null,
            "verifiedDomains": verified
        }]
    });
    Ok(odata_response(StatusCode::OK, &body))
}

/// Seats consumed of a SKU: users (active or soft-deleted, which keep their licences) holding it.
fn consumed(tenant: &Tenant, sku_id: &str) -> u32 {
    let n = tenant
        .users
        .values()
        .filter(|u| has_license(&u.properties, sku_id))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn has_license(properties: &Map<String, Value>, sku_id: &str) -> bool {
    properties
        .get("assignedLicenses")
        .and_then(Value::as_array)
        .is_some_and(|l| {
            l.iter().any(|x| {
                x.get("skuId")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.eq_ignore_ascii_case(sku_id))
            })
        })
}

fn sku_json(tenant: &Tenant, sku: &Sku) -> Map<String, Value> {
    json!({
        "accountId": tenant.id, "accountName": tenant.display_name,
        "appliesTo": "User", "capabilityStatus": "Enabled",
        "consumedUnits": consumed(tenant, &sku.sku_id),
        "id": format!("{}_{}", tenant.id, sku.sku_id),
        "prepaidUnits": {"enabled": sku.enabled_units, "suspended": 0, "warning": 0, "lockedOut": 0},
        "servicePlans": sku.service_plans.iter().map(|p| json!({
            "servicePlanId": p.service_plan_id, "servicePlanName": p.service_plan_name,
            "provisioningStatus": "Success", "appliesTo": "User"
        })).collect::<Vec<_>>(),
        "skuId": sku.sku_id, "skuPartNumber": sku.sku_part_number, "subscriptionIds": []
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

/// `GET /subscribedSkus` (graph-spec §9.1): only `$select` is supported.
///
/// # Errors
/// 403 without permission; 400 for `$filter` (message assumed).
pub async fn subscribed_skus(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::ORG_READ)?;
    if param(&raw, "$filter").is_some() {
        return Err(GraphError::unsupported_query(
            "$filter is not supported on subscribedSkus.",
        ));
    }
    let select: Option<Vec<String>> = param(&raw, "$select").map(|s| {
        s.split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect()
    });
    let state = app.lock();
    let tenant = tenant_ref(&state, &caller)?;
    let value: Vec<Value> = tenant
        .skus
        .iter()
        .map(|s| {
            let full = sku_json(tenant, s);
            match &select {
                Some(names) => Value::Object(
                    names
                        .iter()
                        .map(|n| (n.clone(), full.get(n).cloned().unwrap_or(Value::Null)))
                        .collect(),
                ),
                None => Value::Object(full),
            }
        })
        .collect();
    let body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#subscribedSkus", base_url(&headers)),
        "value": value
    });
    Ok(odata_response(StatusCode::OK, &body))
}

/// `POST /users/{id}/assignLicense` (graph-spec §9.2): 200 with the user.
///
/// # Errors
/// 400 for missing parameters, unknown SKUs, an unset usage location or no free seats; 403; 404.
pub async fn assign_license(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GraphError> {
    caller.require(perm::LICENSE_WRITE)?;
    let body = json_body(&body)?;
    let mut state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_mut(&mut state, &caller)?;
    let user_id = find(tenant, &key, now)
        .map(|u| u.id.clone())
        .ok_or_else(|| GraphError::not_found(&key))?;
    let add = body
        .get("addLicenses")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| {
            GraphError::bad_request("A value is required for property 'addLicenses'.")
        })?;
    let remove = body
        .get("removeLicenses")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| {
            GraphError::bad_request("A value is required for property 'removeLicenses'.")
        })?;
    let user = tenant
        .users
        .get(&user_id)
        .ok_or_else(|| GraphError::not_found(&key))?;
    let mut adds = Vec::new();
    for a in &add {
        let sku_id = a
            .get("skuId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !tenant.skus.iter().any(|s| s.sku_id == sku_id) {
            // Wording INF (§9.2).
            return Err(GraphError::bad_request(format!(
                "License {sku_id} does not correspond to a valid company License."
            )));
        }
        let disabled = a.get("disabledPlans").cloned().unwrap_or_else(|| json!([]));
        adds.push((sku_id, disabled));
    }
    if !adds.is_empty()
        && user
            .properties
            .get("usageLocation")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(GraphError::bad_request(
            "License assignment cannot be done for user with invalid usage location.",
        ));
    }
    for (sku_id, _) in &adds {
        if has_license(&user.properties, sku_id) {
            continue;
        }
        let sku = tenant.skus.iter().find(|s| s.sku_id == *sku_id);
        if sku.is_some_and(|s| consumed(tenant, sku_id) >= s.enabled_units) {
            // Sentence INF; the substring "does not have any available licenses" is OBS.
            return Err(GraphError::bad_request(format!(
                "Subscription with SKU {sku_id} does not have any available licenses."
            )));
        }
    }
    let upn = user.upn().to_owned();
    let user = tenant
        .users
        .get_mut(&user_id)
        .ok_or_else(|| GraphError::not_found(&key))?;
    let mut licenses: Vec<Value> = user
        .properties
        .get("assignedLicenses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let removed: Vec<String> = remove
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_ascii_lowercase)
        .collect();
    licenses.retain(|l| {
        let id = l
            .get("skuId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        !removed.contains(&id) && !adds.iter().any(|(a, _)| *a == id)
    });
    for (sku_id, disabled) in adds {
        licenses.push(json!({"disabledPlans": disabled, "skuId": sku_id}));
    }
    let old = user.properties.get("assignedLicenses").cloned();
    user.properties
        .insert("assignedLicenses".into(), Value::Array(licenses.clone()));
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/v1.0/$metadata#users/$entity",
            base_url(&headers)
        )),
    );
    out.extend(odata::project(&user.properties, Resource::User, None));
    tenant.record_change(ObjectKind::User, &user_id, now);
    audit::record(
        &mut state,
        &caller,
        AuditEvent {
            category: "UserManagement",
            activity: "Change user license",
            operation_type: "Update",
            targets: vec![audit::user_target(
                &user_id,
                &upn,
                vec![audit::modified(
                    "assignedLicense",
                    old.as_ref(),
                    &Value::Array(licenses),
                )],
            )],
        },
    );
    Ok(odata_response(StatusCode::OK, &Value::Object(out)))
}

/// `GET /users/{id}/licenseDetails`.
///
/// # Errors
/// 403, 404.
pub async fn license_details(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::USERS_READ)?;
    let state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_ref(&state, &caller)?;
    let user = find(tenant, &key, now).ok_or_else(|| GraphError::not_found(&key))?;
    let value: Vec<Value> = tenant
        .skus
        .iter()
        .filter(|s| has_license(&user.properties, &s.sku_id))
        .map(|s| {
            json!({
                "id": format!("{}_{}", user.id, s.sku_id), "skuId": s.sku_id,
                "skuPartNumber": s.sku_part_number,
                "servicePlans": s.service_plans.iter().map(|p| json!({
                    "servicePlanId": p.service_plan_id, "servicePlanName": p.service_plan_name,
                    "provisioningStatus": "Success", "appliesTo": "User"
                })).collect::<Vec<_>>()
            })
        })
        .collect();
    let body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#users('{}')/licenseDetails", base_url(&headers), user.id),
        "value": value
    });
    Ok(odata_response(StatusCode::OK, &body))
}

/// `GET /auditLogs/directoryAudits` (graph-spec §10): newest first, `$filter` on
/// `activityDisplayName`, `category`, `activityDateTime`, `correlationId`, `$top` paging.
///
/// # Errors
/// 403 without `AuditLog.Read.All`; 400 for a bad filter or `$top`.
pub async fn audits(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::AUDIT_READ)?;
    let mut query = odata::Query::parse(
        raw.iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("$filter"))
            .cloned()
            .collect(),
        Resource::User,
        false,
    )
    .map_err(|e| {
        if e.message.contains("Could not find a property") {
            GraphError::bad_request("$select is not supported on directoryAudits.")
        } else {
            e
        }
    })?;
    query.select = None;
    query.filter = param(&raw, "$filter")
        .map(odata::parse_filter)
        .transpose()?;
    query.order_by = Some(("activityDateTime".into(), true));
    query.raw = raw;
    let state = app.lock();
    let tenant = tenant_ref(&state, &caller)?;
    let items: Vec<&Map<String, Value>> = tenant
        .audits
        .iter()
        .filter_map(Value::as_object)
        .filter(|a| {
            query
                .filter
                .as_ref()
                .is_none_or(|f| odata::eval_filter(f, a))
        })
        .collect();
    let (page, next) = query.page(items, 100);
    let base = base_url(&headers);
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(format!("{base}/v1.0/$metadata#auditLogs/directoryAudits")),
    );
    if let Some(token) = next {
        out.insert(
            "@odata.nextLink".into(),
            json!(query.next_link(&base, "/v1.0/auditLogs/directoryAudits", &token)),
        );
    }
    out.insert(
        "value".into(),
        Value::Array(page.into_iter().map(|a| Value::Object(a.clone())).collect()),
    );
    Ok(odata_response(StatusCode::OK, &Value::Object(out)))
}
