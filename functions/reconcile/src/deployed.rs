//! The deployed wiring: the configuration read once per cold start, every client built once,
//! and each invocation bounded by its deadline (R-OPS-2).
//!
//! Configuration (`m365_lambda::config`): the reconcile section — `M365_RECONCILE_QUEUE_URL`
//! (required: the queue of passes), `M365_RECONCILE_SAFEGUARD` (`10%` or `500`, default `10%`),
//! `M365_RECONCILE_MAX_PAGES` (delta pages per pass, default 50) — and the directory password
//! policy every function shares, whose maximum age (`M365_PASSWORD_MAX_AGE_DAYS`, decimal days;
//! unset or 0: passwords never expire) decides expiry; retry and deadline policies as every
//! function's.

use lambda_runtime::Context;
use m365_engine::model::{Actor, RetryMessage};
use m365_engine::ports::{Clock, SystemClock};
use m365_engine::usecase::reconcile::ReconcileSettings;
use m365_lambda::config::{Config, ConfigError, Section};
use m365_lambda::provision::Deployed as Ports;
use m365_lambda::{App, AppError, GraphApp, GraphSetupError};

use crate::{Deployed, Event, Reconciler};

/// The function's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The pass's settings (safeguard, pages per pass, password policy, stuck work).
    pub reconcile: ReconcileSettings,
    /// How long a requested run's pass waits before trying again while another pass holds the
    /// tenant (R-OPS-2; default `reconcile_runs::RUN_WAIT`, 20 s).
    pub run_wait: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            reconcile: ReconcileSettings::default(),
            run_wait: m365_engine::usecase::reconcile_runs::RUN_WAIT,
        }
    }
}

impl Settings {
    /// The settings of a configuration: its reconcile section's knobs and the directory password
    /// policy (the one source of password expiry, R-PWD-4).
    ///
    /// # Errors
    /// [`ConfigError`] naming `M365_RECONCILE_QUEUE_URL` when the configuration was read without
    /// the reconcile section.
    pub fn of_config(config: &Config) -> Result<Self, ConfigError> {
        let section = config.reconcile()?;
        Ok(Self {
            reconcile: ReconcileSettings {
                safeguard: section.safeguard,
                max_pages: section.max_pages,
                password_policy: config.password_policy.clone(),
                ..ReconcileSettings::default()
            },
            ..Self::default()
        })
    }
}

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The AWS side.
    #[error(transparent)]
    App(#[from] AppError),
    /// The Graph side.
    #[error(transparent)]
    Graph(#[from] GraphSetupError),
    /// The reconcile section of the configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl Deployed {
    /// Reads the configuration and builds every client once (cold start).
    ///
    /// # Errors
    /// [`StartError`] for a missing or invalid variable or an unreadable OAuth client secret.
    pub async fn from_env() -> Result<Self, StartError> {
        let app = App::from_env_for(&[Section::Reconcile]).await?;
        let graph = GraphApp::load(&app).await?;
        let settings = Settings::of_config(&app.config)?;
        let queue_url = app.config.reconcile()?.queue_url.clone();
        Ok(Self::with_clock(
            &app,
            &graph,
            SystemClock,
            settings,
            &queue_url,
        ))
    }
}

impl<C: Clock + Clone> Reconciler<C> {
    /// The wiring of an already built [`App`] and [`GraphApp`] on `clock`, queueing passes on
    /// `queue_url`.
    #[must_use]
    pub fn with_clock(
        app: &App,
        graph: &GraphApp,
        clock: C,
        settings: Settings,
        queue_url: &str,
    ) -> Self {
        Self {
            ports: Ports::with_clock(app, graph, clock),
            passes: app.queue(queue_url),
            settings,
        }
    }

    /// This wiring with its Graph calls bounded by the deadline of `event`'s invocation: behind
    /// the HTTP API, before API Gateway's 30 s; otherwise before the Lambda deadline. A pass cut
    /// off there fails retryably and is redelivered.
    #[must_use]
    pub fn for_event(&self, event: &Event, context: &Context) -> Self {
        let deadlines = self.ports.deadlines;
        let deadline = match event {
            Event::Api(_) => deadlines.of_api_context(context),
            Event::Passes(_) | Event::Schedule(_) => deadlines.of_context(context),
        };
        Self {
            ports: self.ports.until(deadline),
            passes: self.passes.clone(),
            settings: self.settings.clone(),
        }
        .acting_for_event(event)
    }

    /// This wiring acting for whoever `event` comes from (R-AUD-1, see [`actor`]).
    #[must_use]
    pub fn acting_for_event(&self, event: &Event) -> Self {
        Self {
            ports: self.ports.clone().acting_for(actor(event)),
            passes: self.passes.clone(),
            settings: self.settings.clone(),
        }
    }
}

/// Who the invocation acts for (R-AUD-1): the API caller; for a batch of passes, the actor its
/// messages carry (the admin who asked for the run, `schedule` for the scheduled ones; the
/// queue delivers one pass per invocation, and a batch whose messages disagree acts as
/// `schedule`); `schedule` for the schedule's tick.
fn actor(event: &Event) -> Actor {
    match event {
        Event::Api(request) => m365_lambda::provision::actor_of_context(&request.request_context),
        Event::Passes(batch) => {
            let mut actors = batch.records.iter().map(|r| {
                r.body
                    .as_deref()
                    .and_then(|b| serde_json::from_str::<RetryMessage>(b).ok())
                    .and_then(|m| m.actor)
            });
            match actors.next().flatten() {
                Some(first) if actors.all(|a| a.as_ref() == Some(&first)) => first,
                _ => Actor::schedule(),
            }
        }
        Event::Schedule(_) => Actor::schedule(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use m365_lambda::config::{
        PASSWORD_MAX_AGE_DAYS, RECONCILE_MAX_PAGES, RECONCILE_QUEUE_URL, RECONCILE_SAFEGUARD,
        REQUIRED,
    };

    /// A complete environment of the reconcile function, plus `extra`.
    fn config(extra: &[(&str, &str)]) -> Config {
        let value = |name: &str| -> Option<String> {
            if let Some((_, v)) = extra.iter().find(|(n, _)| *n == name) {
                return Some((*v).to_owned());
            }
            REQUIRED.contains(&name).then(|| match name {
                n if n.ends_with("_TABLE") => "m365-sync-test".to_owned(),
                n if n.ends_with("_URL") => "https://sqs.eu-west-1.amazonaws.com/1/q".to_owned(),
                n if n.ends_with("_PREFIX") => "m365-sync/test/tenant/".to_owned(),
                _ => "m365-sync/test/secret".to_owned(),
            })
        };
        Config::read(value, &[Section::Reconcile]).unwrap()
    }

    #[test]
    fn settings_default_to_a_ten_percent_safeguard_and_no_password_expiry() {
        // R-REC-3, R-PWD-4
        let s = Settings::of_config(&config(&[(
            RECONCILE_QUEUE_URL,
            "https://sqs.eu-west-1.amazonaws.com/1/passes",
        )]))
        .unwrap();
        assert_eq!(s.reconcile.safeguard.to_string(), "10%");
        assert_eq!(s.reconcile.max_pages, 50);
        assert_eq!(s.reconcile.password_policy.max_age(), None);
        assert!(s.reconcile.sweep_expiry);
    }

    #[test]
    fn settings_take_the_reconcile_knobs_and_the_one_directory_password_policy() {
        // R-REC-3, R-PWD-4: reconcile expires passwords by the policy every function reads.
        let config = config(&[
            (
                RECONCILE_QUEUE_URL,
                "https://sqs.eu-west-1.amazonaws.com/1/passes",
            ),
            (PASSWORD_MAX_AGE_DAYS, "90"),
            (RECONCILE_SAFEGUARD, "500"),
            (RECONCILE_MAX_PAGES, "7"),
        ]);
        let s = Settings::of_config(&config).unwrap();
        assert_eq!(s.reconcile.password_policy, config.password_policy);
        assert_eq!(
            s.reconcile.password_policy.max_age(),
            Some(TimeDelta::days(90))
        );
        assert_eq!(
            s.reconcile.safeguard,
            m365_engine::policy::safeguard::Safeguard::Absolute(500)
        );
        assert_eq!(s.reconcile.max_pages, 7);
    }

    fn passes(actors: &[Option<&str>]) -> Event {
        let records: Vec<serde_json::Value> = actors
            .iter()
            .enumerate()
            .map(|(i, actor)| {
                let mut body = serde_json::json!({
                    "operationId": format!("reconcile:t:{i}"), "kind": "reconcile",
                    "subject": {"type": "tenant", "id": "6e1f0c1a-0000-4000-8000-000000000001"},
                    "attempt": 1, "notBefore": "2026-12-08T00:00:00Z", "reason": "requested"
                });
                if let Some(a) = actor {
                    body["actor"] = serde_json::json!(a);
                }
                serde_json::json!({"messageId": format!("m-{i}"), "eventSource": "aws:sqs",
                                   "body": body.to_string()})
            })
            .collect();
        Event::decode(serde_json::json!({ "Records": records })).unwrap()
    }

    #[test]
    fn a_pass_acts_for_the_actor_its_message_carries_and_a_tick_for_the_schedule() {
        // R-AUD-1
        let arn = "arn:aws:iam::123456789012:user/admin";
        assert_eq!(actor(&passes(&[Some(arn)])).as_str(), arn);
        assert_eq!(actor(&passes(&[None])).as_str(), Actor::SCHEDULE);
        assert_eq!(
            actor(&passes(&[Some(arn), Some("local")])).as_str(),
            Actor::SCHEDULE,
            "messages that disagree"
        );
    }
}
