//! `/{tenant}/oauth2/v2.0/authorize` (graph-spec §1.2) and the admin-consent endpoints
//! `/{tenant}/v2.0/adminconsent` and `/{tenant}/adminconsent` (§1.3).
//!
//! `GET` renders a sign-in + consent page. Its form POSTs the original parameters plus `login`,
//! `passwd` and `action=accept|cancel` back to the same URL; a script completes the flow
//! without a browser by sending that POST itself and reading the 302 `Location`
//! (README: "Completing sign-in from a script").

use std::collections::{BTreeSet, HashMap};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;

use super::aadsts::AadError;
use super::page::{ResponseMode, SignInPage, error_page, parse_form, redirect, sign_in_page};
use super::token::{TenantKey, resolve_tenant_key};
use super::{
    AuthCode, PkceMethod, Scope, admin_restricted, classify_scope, granted_scopes, random_token,
};
use crate::AppState;
use crate::request::{RequestIds, TenantTag};
use crate::state::{AppGrant, State, new_id};

/// Which endpoint a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// `/oauth2/v2.0/authorize`.
    Authorize,
    /// `/v2.0/adminconsent` (`scope` required).
    AdminConsentV2,
    /// `/adminconsent` (application permissions, no `scope`).
    AdminConsentV1,
}

/// A request whose client and redirect URI are trusted, so errors may be redirected.
#[derive(Debug)]
struct Checked {
    tenant: TenantKey,
    client_id: String,
    app_name: String,
    redirect_uri: String,
    mode: ResponseMode,
    state: Option<String>,
}

/// Why a request was refused: before the redirect URI is trusted, an error page; after, a
/// redirect carrying `error` and `error_description`.
#[derive(Debug)]
enum Refusal {
    Page(StatusCode, AadError),
    Redirect(Box<Checked>, &'static str, AadError),
}

pub(super) async fn authorize_page(
    app: AxumState<AppState>,
    tenant: Path<String>,
    ids: Extension<RequestIds>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parse_form(query.unwrap_or_default().as_bytes());
    page(app, tenant, ids, params, Flow::Authorize)
}

pub(super) async fn authorize_submit(
    app: AxumState<AppState>,
    tenant: Path<String>,
    ids: Extension<RequestIds>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    submit(app, tenant, ids, merged(query, &body), Flow::Authorize)
}

pub(super) async fn admin_consent_page_v2(
    app: AxumState<AppState>,
    tenant: Path<String>,
    ids: Extension<RequestIds>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parse_form(query.unwrap_or_default().as_bytes());
    page(app, tenant, ids, params, Flow::AdminConsentV2)
}

pub(super) async fn admin_consent_submit_v2(
    app: AxumState<AppState>,
    tenant: Path<String>,
    ids: Extension<RequestIds>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    submit(app, tenant, ids, merged(query, &body), Flow::AdminConsentV2)
}

pub(super) async fn admin_consent_page_v1(
    app: AxumState<AppState>,
    tenant: Path<String>,
    ids: Extension<RequestIds>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parse_form(query.unwrap_or_default().as_bytes());
    page(app, tenant, ids, params, Flow::AdminConsentV1)
}

pub(super) async fn admin_consent_submit_v1(
    app: AxumState<AppState>,
    tenant: Path<String>,
    ids: Extension<RequestIds>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    submit(app, tenant, ids, merged(query, &body), Flow::AdminConsentV1)
}

/// Query parameters overlaid by the form body.
fn merged(query: Option<String>, body: &[u8]) -> HashMap<String, String> {
    let mut params = parse_form(query.unwrap_or_default().as_bytes());
    params.extend(parse_form(body));
    params
}

fn page(
    AxumState(app): AxumState<AppState>,
    Path(tenant): Path<String>,
    Extension(ids): Extension<RequestIds>,
    params: HashMap<String, String>,
    flow: Flow,
) -> Response {
    let state = app.lock();
    let now = state.clock.now();
    let checked = match check(&state, &tenant, &params, flow) {
        Ok(c) => c,
        Err(refusal) => return refuse(refusal, flow, &ids, now),
    };
    let tenant_key = checked.tenant.clone();
    let mut response =
        if flow == Flow::Authorize && params.get("prompt").map(String::as_str) == Some("none") {
            // The emulator keeps no browser session, so a silent request always needs sign-in.
            let e = AadError::new_authorize(
                50_058,
                "A silent sign-in request was sent but no user is signed in.",
            );
            refuse(
                Refusal::Redirect(Box::new(checked), "login_required", e),
                flow,
                &ids,
                now,
            )
        } else {
            let permissions = permissions_shown(&state, &checked, &params, flow);
            sign_in_page(&SignInPage {
                title: if flow == Flow::Authorize {
                    "Sign in"
                } else {
                    "Permissions requested"
                },
                app_name: &checked.app_name,
                permissions: &permissions,
                admin_consent: flow != Flow::Authorize,
                hidden: &params,
                login_hint: params.get("login_hint").map_or("", String::as_str),
                error: None,
            })
        };
    tag(&mut response, &tenant_key);
    response
}

fn submit(
    AxumState(app): AxumState<AppState>,
    Path(tenant): Path<String>,
    Extension(ids): Extension<RequestIds>,
    params: HashMap<String, String>,
    flow: Flow,
) -> Response {
    let mut state = app.lock();
    let now = state.clock.now();
    let checked = match check(&state, &tenant, &params, flow) {
        Ok(c) => c,
        Err(refusal) => return refuse(refusal, flow, &ids, now),
    };
    if params.get("action").map(String::as_str) == Some("cancel") {
        let e = AadError::new_authorize(
            65_004,
            if flow == Flow::Authorize {
                "User declined to consent to access the app."
            } else {
                "The resource owner or authorization server denied the request."
            },
        );
        let error = if flow == Flow::Authorize {
            "access_denied"
        } else {
            "consent_required"
        };
        return refuse(
            Refusal::Redirect(Box::new(checked), error, e),
            flow,
            &ids,
            now,
        );
    }
    let signed_in = sign_in(&mut state, &checked, &params, now);
    let (tenant_id, user_id) = match signed_in {
        Ok(v) => v,
        Err(e) => {
            let permissions = permissions_shown(&state, &checked, &params, flow);
            let mut response = sign_in_page(&SignInPage {
                title: if flow == Flow::Authorize {
                    "Sign in"
                } else {
                    "Permissions requested"
                },
                app_name: &checked.app_name,
                permissions: &permissions,
                admin_consent: flow != Flow::Authorize,
                hidden: &params,
                login_hint: params.get("login").map_or("", String::as_str),
                error: Some((e.code, &e.message)),
            });
            tag(&mut response, &checked.tenant);
            return response;
        }
    };
    let result = match flow {
        Flow::Authorize => issue_code(&mut state, &checked, &params, &tenant_id, &user_id, now),
        Flow::AdminConsentV2 | Flow::AdminConsentV1 => {
            admin_consent(&mut state, &checked, &params, &tenant_id, &user_id, flow)
        }
    };
    drop(state);
    let mut response = match result {
        Ok(response) => response,
        Err(e) => refuse(
            Refusal::Redirect(Box::new(checked), e.error, e),
            flow,
            &ids,
            now,
        ),
    };
    response.extensions_mut().insert(TenantTag(tenant_id));
    response
}

fn tag(response: &mut Response, key: &TenantKey) {
    if let TenantKey::Tenant(id) = key {
        response.extensions_mut().insert(TenantTag(id.clone()));
    }
}

/// Validates tenant, client and redirect URI (errors shown on a page), then the rest of the
/// request (errors redirected to the client).
fn check(
    state: &State,
    tenant: &str,
    params: &HashMap<String, String>,
    flow: Flow,
) -> Result<Checked, Refusal> {
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let page = |e: AadError| Refusal::Page(StatusCode::BAD_REQUEST, e);
    let key = resolve_tenant_key(state, tenant).map_err(page)?;
    let client_id = param("client_id")
        .ok_or_else(|| page(AadError::missing_parameter("client_id")))?
        .to_ascii_lowercase();
    let Some(app) = state.applications.get(&client_id) else {
        return Err(page(AadError::unknown_client(&client_id, tenant)));
    };
    let redirect_uri = match param("redirect_uri") {
        Some(uri) => uri.to_owned(),
        // Admin consent falls back to the app's first registered redirect URI.
        None if flow != Flow::Authorize && !app.redirect_uris.is_empty() => {
            app.redirect_uris[0].clone()
        }
        None => return Err(page(AadError::missing_parameter("redirect_uri"))),
    };
    if !app.redirect_uris.contains(&redirect_uri) {
        return Err(page(AadError::new_authorize(
            50_011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this."
            ),
        )));
    }
    let mode = match param("response_mode") {
        None | Some("query") => ResponseMode::Query,
        Some("fragment") => ResponseMode::Fragment,
        Some("form_post") => ResponseMode::FormPost,
        Some(_) => ResponseMode::Query,
    };
    let checked = Checked {
        tenant: key,
        client_id,
        app_name: app.display_name.clone(),
        redirect_uri,
        mode,
        state: param("state").map(str::to_owned),
    };
    let bad = |c: Checked, error: &'static str, e: AadError| {
        Err(Refusal::Redirect(Box::new(c), error, e))
    };
    match flow {
        Flow::Authorize => {
            match param("response_type") {
                None => {
                    return bad(
                        checked,
                        "invalid_request",
                        AadError::missing_parameter("response_type"),
                    );
                }
                Some(rt) if !rt.split_whitespace().any(|t| t == "code") => {
                    return bad(
                        checked,
                        "unsupported_response_type",
                        AadError::new_authorize(
                            70_005,
                            format!("response_type '{rt}' is not supported for the application."),
                        ),
                    );
                }
                Some(_) => {}
            }
            let Some(scope) = param("scope") else {
                return bad(
                    checked,
                    "invalid_request",
                    AadError::missing_parameter("scope"),
                );
            };
            if let Some(other) = scope
                .split_whitespace()
                .find(|s| matches!(classify_scope(s), Scope::Other(_)))
            {
                return bad(checked, "invalid_request", AadError::invalid_scope(other));
            }
            if let Some(challenge) = param("code_challenge") {
                match param("code_challenge_method").unwrap_or("plain") {
                    "S256" if challenge.len() != 43 => {
                        return bad(
                            checked,
                            "invalid_request",
                            AadError::new_authorize(
                                501_491,
                                "Invalid size of Code_Challenge parameter.",
                            ),
                        );
                    }
                    "S256" | "plain" => {}
                    other => {
                        return bad(
                            checked,
                            "invalid_request",
                            AadError::new_authorize(
                                501_481,
                                format!(
                                    "The code_challenge_method '{other}' is not supported; use 'S256' or 'plain'."
                                ),
                            ),
                        );
                    }
                }
            }
        }
        Flow::AdminConsentV2 => {
            if param("scope").is_none() {
                return bad(
                    checked,
                    "invalid_request",
                    AadError::missing_parameter("scope"),
                );
            }
        }
        Flow::AdminConsentV1 => {}
    }
    Ok(checked)
}

/// Sends a refusal: an error page, or a redirect with `error`, `error_description` and `state`.
fn refuse(refusal: Refusal, flow: Flow, ids: &RequestIds, now: DateTime<Utc>) -> Response {
    match refusal {
        Refusal::Page(status, e) => error_page(status, e.code, &e.message),
        Refusal::Redirect(c, error, e) => {
            let description = e.description(ids, now);
            // The legacy admin-consent endpoint answers a cancelled consent with a plain text.
            let (error, description) = if flow == Flow::AdminConsentV1 && e.code == 65_004 {
                (
                    "permission_denied",
                    "The admin canceled the request".to_owned(),
                )
            } else {
                (error, description)
            };
            let mut params: Vec<(&str, &str)> = Vec::new();
            if flow == Flow::AdminConsentV2 {
                params.push(("admin_consent", "True"));
            }
            params.push(("error", error));
            params.push(("error_description", &description));
            if let Some(s) = &c.state {
                params.push(("state", s));
            }
            redirect(&c.redirect_uri, c.mode, &params)
        }
    }
}

/// The permissions the page lists.
fn permissions_shown(
    state: &State,
    checked: &Checked,
    params: &HashMap<String, String>,
    flow: Flow,
) -> Vec<String> {
    let Some(app) = state.applications.get(&checked.client_id) else {
        return Vec::new();
    };
    match flow {
        Flow::Authorize => requested_graph_scopes(app, params).into_iter().collect(),
        _ => app
            .required_roles
            .iter()
            .map(|r| format!("{r} (application)"))
            .chain(
                app.required_scopes
                    .iter()
                    .map(|s| format!("{s} (delegated)")),
            )
            .collect(),
    }
}

/// Graph scopes an authorize request asks for (`/.default` = the app's required scopes).
fn requested_graph_scopes(
    app: &crate::state::Application,
    params: &HashMap<String, String>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in params
        .get("scope")
        .map_or("", String::as_str)
        .split_whitespace()
    {
        match classify_scope(s) {
            Scope::Graph(name) => {
                out.insert(name);
            }
            Scope::GraphDefault => out.extend(
                app.required_scopes
                    .iter()
                    .filter(|s| !matches!(classify_scope(s), Scope::Oidc(_)))
                    .cloned(),
            ),
            Scope::Oidc(_) | Scope::Other(_) => {}
        }
    }
    out
}

/// Checks `login`/`passwd` (AADSTS50020, 50034, 50053, 50057, 50126). Returns (tenant id, user id).
///
/// At a tenant-specific authority only that tenant's users sign in: a user of another tenant is
/// refused with AADSTS50020 on the page, after their credentials were checked in their home
/// tenant (Microsoft authenticates the user at home, then finds no account in the resource
/// tenant; no redirect reaches the app — R-CONN-7; exact wording unconfirmed, see
/// [`AadError::user_not_in_tenant`]).
fn sign_in(
    state: &mut State,
    checked: &Checked,
    params: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<(String, String), AadError> {
    let key = &checked.tenant;
    let login = params.get("login").map_or("", |s| s.trim());
    let password = params.get("passwd").map_or("", String::as_str);
    if login.is_empty() {
        return Err(AadError::new_authorize(
            900_144,
            "The request body must contain the following parameter: 'login'.",
        ));
    }
    let by_domain = login
        .rsplit_once('@')
        .and_then(|(_, domain)| state.resolve_tenant(domain));
    let home = by_domain.filter(|t| t.active_user_by_upn(login).is_some());
    let (tenant, foreign) = match key {
        TenantKey::Tenant(id) => match (state.tenants.get(id), home) {
            // A user of another tenant at this tenant's authority: authenticated at home, then
            // refused here (AADSTS50020).
            (Some(resource), Some(home))
                if home.id != resource.id && resource.active_user_by_upn(login).is_none() =>
            {
                (Some(home), Some(resource))
            }
            (resource, _) => (resource, None),
        },
        TenantKey::Multi => (by_domain, None),
    };
    let Some(tenant) = tenant else {
        return Err(AadError::user_not_found(login, "organizations"));
    };
    let foreign = foreign.map(|resource| {
        let e = AadError::user_not_in_tenant(
            login,
            &tenant.id,
            &resource.display_name,
            &checked.client_id,
            &checked.app_name,
        );
        AadError::new_authorize(e.code, e.message)
    });
    let tenant_id = tenant.id.clone();
    let Some(user) = tenant.active_user_by_upn(login) else {
        let e = AadError::user_not_found(login, &tenant.display_name);
        return Err(AadError::new_authorize(e.code, e.message));
    };
    let user_id = user.id.clone();
    let password_ok = user
        .password
        .as_ref()
        .is_some_and(|p| p.expose_secret() == password);
    let enabled = user.account_enabled();
    let settings = state.identity.settings;
    let entry = state
        .identity
        .failed_sign_ins
        .entry(user_id.clone())
        .or_insert((0, None));
    if let Some(until) = entry.1
        && until > now
    {
        return Err(AadError::new_authorize(
            50_053,
            "Your account is locked because you tried to sign in too many times with an incorrect user ID or password.",
        ));
    }
    if !password_ok {
        entry.0 += 1;
        if entry.0 >= settings.lockout_threshold {
            *entry = (0, Some(now + settings.lockout_duration));
        }
        return Err(AadError::new_authorize(
            50_126,
            "Error validating credentials due to invalid username or password.",
        ));
    }
    *entry = (0, None);
    if !enabled {
        return Err(AadError::user_disabled());
    }
    if let Some(refused) = foreign {
        return Err(refused);
    }
    Ok((tenant_id, user_id))
}

/// Records the user's consent (if needed) and redirects with a fresh authorization code.
fn issue_code(
    state: &mut State,
    checked: &Checked,
    params: &HashMap<String, String>,
    tenant_id: &str,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<Response, AadError> {
    let Some(app) = state.applications.get(&checked.client_id) else {
        return Err(AadError::unknown_client(&checked.client_id, tenant_id));
    };
    let requested = requested_graph_scopes(app, params);
    let is_admin = state
        .tenants
        .get(tenant_id)
        .is_some_and(|t| t.admins.contains_key(user_id));
    let granted = granted_scopes(state, tenant_id, &checked.client_id, user_id).unwrap_or_default();
    let missing: BTreeSet<String> = requested
        .iter()
        .filter(|s| !granted.iter().any(|g| g.eq_ignore_ascii_case(s)))
        .cloned()
        .collect();
    let needs_record = !missing.is_empty()
        || granted_scopes(state, tenant_id, &checked.client_id, user_id).is_none();
    if needs_record {
        if !is_admin && missing.iter().any(|s| admin_restricted(s)) {
            // §1.2: an ordinary user cannot consent to admin-restricted permissions.
            return Err(
                AadError::new_authorize(90_094, "The grant requires admin permission.")
                    .with_error("access_denied"),
            );
        }
        state
            .identity
            .user_consents
            .entry((
                tenant_id.to_owned(),
                checked.client_id.clone(),
                user_id.to_owned(),
            ))
            .or_default()
            .extend(missing);
    }
    let code = random_token(48);
    let challenge = params
        .get("code_challenge")
        .filter(|c| !c.is_empty())
        .map(|c| {
            let method = match params.get("code_challenge_method").map(String::as_str) {
                Some("S256") => PkceMethod::S256,
                _ => PkceMethod::Plain,
            };
            (c.clone(), method)
        });
    state
        .identity
        .codes
        .retain(|_, c| c.issued_at > now - chrono::Duration::days(1));
    state.identity.codes.insert(
        code.clone(),
        AuthCode {
            client_id: checked.client_id.clone(),
            tenant_id: tenant_id.to_owned(),
            user_id: user_id.to_owned(),
            redirect_uri: checked.redirect_uri.clone(),
            scopes: params
                .get("scope")
                .map_or("", String::as_str)
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            challenge,
            nonce: params.get("nonce").filter(|n| !n.is_empty()).cloned(),
            issued_at: now,
            redeemed: false,
        },
    );
    let mut out: Vec<(&str, &str)> = vec![("code", &code)];
    if let Some(s) = &checked.state {
        out.push(("state", s));
    }
    Ok(redirect(&checked.redirect_uri, checked.mode, &out))
}

/// Grants the app's application permissions (and delegated scopes) tenant-wide (§1.3).
fn admin_consent(
    state: &mut State,
    checked: &Checked,
    params: &HashMap<String, String>,
    tenant_id: &str,
    user_id: &str,
    flow: Flow,
) -> Result<Response, AadError> {
    let Some(app) = state.applications.get(&checked.client_id) else {
        return Err(AadError::unknown_client(&checked.client_id, tenant_id));
    };
    let roles = app.required_roles.clone();
    let scopes = app.required_scopes.clone();
    let Some(tenant) = state.tenants.get_mut(tenant_id) else {
        return Err(AadError::unknown_tenant(tenant_id));
    };
    if !tenant.admins.contains_key(user_id) {
        return Err(
            AadError::new_authorize(90_094, "The grant requires admin permission.")
                .with_error("access_denied"),
        );
    }
    let grant = tenant
        .app_grants
        .entry(checked.client_id.clone())
        .or_insert_with(|| AppGrant {
            roles: BTreeSet::new(),
            directory_roles: BTreeSet::new(),
            service_principal_id: new_id(),
        });
    grant.roles.extend(roles);
    state
        .identity
        .tenant_consents
        .entry((tenant_id.to_owned(), checked.client_id.clone()))
        .or_default()
        .extend(scopes);
    let scope = params.get("scope").cloned().unwrap_or_default();
    let mut out: Vec<(&str, &str)> = vec![("admin_consent", "True"), ("tenant", tenant_id)];
    if flow == Flow::AdminConsentV2 {
        out.push(("scope", &scope));
    }
    if let Some(s) = &checked.state {
        out.push(("state", s));
    }
    Ok(redirect(&checked.redirect_uri, checked.mode, &out))
}
