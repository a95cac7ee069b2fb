//! Seeding benchmark: builds the emulator state from seeds with many users and prints the
//! times side by side, so a super-linear regression in [`m365_emulator::State::from_seed`]
//! shows at a glance (the per-user column stays flat when seeding is linear). It then creates
//! a few hundred more users through `POST /v1.0/users` (in-process, no socket) and prints the
//! time per create at each tenant size.
//!
//! ```sh
//! cargo run -p m365-emulator --example seed_bench               # 10k, 50k and 100k users
//! cargo run -p m365-emulator --example seed_bench -- 1000 20000 # other sizes
//! ```
//!
//! Not a test: the numbers depend on the machine and the build profile.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Duration as Span;
use m365_emulator::identity::{AccessClaims, mint_access_token};
use m365_emulator::{AppState, Seed, State};
use serde_json::{Value, json};
use tower::ServiceExt;

const TENANT: &str = "0c5a7f3e-2d1b-4e6a-9f80-1a2b3c4d5e6f";
const APP: &str = "5f0c3e1a-9b7d-4c2e-8a61-0d4b2f7e9c11";
/// Users created through Graph per tenant size (below the default write quotas).
const CREATES: usize = 500;

/// A seed like the integration tests' large tenant: one tenant, `n` users, a group naming a
/// few of them by UPN and an admin.
fn seed_json(n: usize) -> String {
    let users: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "userPrincipalName": format!("bulk{i:06}@contoso.com"),
                "displayName": format!("Bulk {i:06}"),
                "accountEnabled": true
            })
        })
        .collect();
    let members: Vec<Value> = (0..n.min(1000))
        .map(|i| json!(format!("BULK{i:06}@contoso.com")))
        .collect();
    json!({
        "applications": [{
            "appId": APP, "displayName": "bench",
            "grants": [{"tenant": TENANT, "roles": ["User.ReadWrite.All"]}]
        }],
        "tenants": [{
            "id": TENANT,
            "displayName": "Contoso",
            "domains": [
                {"name": "contoso.onmicrosoft.com", "authenticationType": "Managed", "isInitial": true},
                {"name": "contoso.com", "authenticationType": "Managed", "isDefault": true}
            ],
            "users": users,
            "groups": [{"displayName": "Bulk", "mailNickname": "bulk", "members": members}],
            "admins": [{"userPrincipalName": "admin@contoso.onmicrosoft.com", "password": "x"}]
        }]
    })
    .to_string()
}

/// Creates [`CREATES`] users through `POST /v1.0/users`; returns the mean time per create.
async fn time_creates(state: State) -> anyhow::Result<Duration> {
    let app = AppState::new(state);
    let token = {
        let mut state = app.lock();
        let expires_at = state.clock.now() + Span::hours(1);
        mint_access_token(
            &mut state,
            AccessClaims {
                tenant_id: TENANT.to_owned(),
                app_id: APP.to_owned(),
                roles: vec!["User.ReadWrite.All".to_owned()],
                scopes: Vec::new(),
                user_upn: None,
                expires_at,
            },
        )
    };
    let router = m365_emulator::app(app);
    let started = Instant::now();
    for i in 0..CREATES {
        let body = json!({
            "accountEnabled": true,
            "displayName": format!("New {i}"),
            "mailNickname": format!("new{i}"),
            "userPrincipalName": format!("new{i:06}@contoso.com"),
            "passwordProfile": {"password": "Correct-Horse-42"}
        });
        let request = Request::post("/v1.0/users")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))?;
        let status = router.clone().oneshot(request).await?.status();
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "create {i} answered {status}"
        );
    }
    Ok(started.elapsed() / u32::try_from(CREATES)?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = {
        let args: Vec<usize> = std::env::args()
            .skip(1)
            .map(|a| a.parse())
            .collect::<Result<_, _>>()?;
        if args.is_empty() {
            vec![10_000, 50_000, 100_000]
        } else {
            args
        }
    };
    let mut rows: Vec<(usize, Duration, Duration, Duration)> = Vec::new();
    for &n in &sizes {
        let text = seed_json(n);
        let started = Instant::now();
        let seed = Seed::from_json(&text)?;
        let parsed = started.elapsed();
        let state = State::from_seed(seed)?;
        let built = started.elapsed() - parsed;
        let users = state.tenants.get(TENANT).map_or(0, |t| t.users.len());
        anyhow::ensure!(users == n + 1, "expected {} users, got {users}", n + 1);
        let per_create = time_creates(state).await?;
        rows.push((n, parsed, built, per_create));
    }
    println!(
        "{:>10} {:>10} {:>10} {:>10} {:>10} {:>14}",
        "users", "parse", "from_seed", "total", "µs/user", "POST ms/user"
    );
    for (n, parsed, built, per_create) in rows {
        let total = parsed + built;
        let per_user = total.as_secs_f64() * 1e6 / n.max(1) as f64;
        println!(
            "{n:>10} {:>10} {:>10} {:>10} {per_user:>10.2} {:>14.3}",
            format!("{:.3}s", parsed.as_secs_f64()),
            format!("{:.3}s", built.as_secs_f64()),
            format!("{:.3}s", total.as_secs_f64()),
            per_create.as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
