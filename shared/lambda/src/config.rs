//! The functions' configuration: one [`Config`] tree, read from environment variables once per
//! cold start (`App::from_env`), the only place a function reads its environment.
//!
//! Every variable is checked before anything starts: a missing or invalid variable is reported
//! together with all the others in one [`ConfigError`], so a deployment with a wrong environment
//! fails with the whole list at once, not one variable per attempt. One policy for every
//! variable: blank counts as unset, an optional variable that is unset takes its default, and a
//! set variable that does not parse or is out of range is a problem (never silently ignored).
//! An error names the variable and why it is refused, never its value (a secret could have been
//! pasted into the wrong variable).
//!
//! The sections of the tree:
//! - AWS resources ([`REQUIRED`]: tables, queues, secret ids) and the optional KMS key;
//! - Graph ([`GraphConfig`]): base URLs, the connect callback, the write budget;
//! - the directory password policy ([`DirectoryPasswordPolicy`]: minimum length, required
//!   classes, maximum age — the one source of password expiry for every function);
//! - the retry policy's knobs ([`RetryConfig`]: attempts, first delay, longest delay);
//! - deadlines ([`DeadlinePolicy`]: the margin kept before the Lambda deadline, the retry
//!   worker's floor);
//! - function-specific sections a function asks for with [`Section`] (`reconcile`'s
//!   [`ReconcileConfig`], `notify`'s [`NotifyConfig`]: the welcome email's sender, subject and
//!   body, R-NOT-1); a function that asks for one whose required variable is missing
//!   gets that variable named in the same error as every other problem.
//!
//! `template.yaml` sets [`REQUIRED`] and [`OPTIONAL`] for every function
//! (`Globals.Function.Environment`, the policies from stack Parameters), [`RECONCILE`] on the
//! reconcile function; [`LOCAL`] are read when set and left to a local stack or a tuning
//! deployment (a test keeps the template in step: `tests/template_env.rs`).

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use m365_aws::Resources;
use m365_engine::model::{TemplateError, WelcomeTemplate};
use m365_engine::policy::password::{CharClass, DirectoryPasswordPolicy, ENTRA_MAX_LENGTH};
use m365_engine::ports::RateLimit;
use m365_engine::usecase::RetryPolicy;

use crate::deadline::DeadlinePolicy;

/// `M365_USERS_TABLE`: the users table (users, email claims, groups).
pub const USERS_TABLE: &str = "M365_USERS_TABLE";
/// `M365_TENANTS_TABLE`: the tenants table (tenants, domain claims).
pub const TENANTS_TABLE: &str = "M365_TENANTS_TABLE";
/// `M365_BINDINGS_TABLE`: the bindings table.
pub const BINDINGS_TABLE: &str = "M365_BINDINGS_TABLE";
/// `M365_EVENTS_TABLE`: the events table.
pub const EVENTS_TABLE: &str = "M365_EVENTS_TABLE";
/// `M365_FAILURES_TABLE`: the failures table.
pub const FAILURES_TABLE: &str = "M365_FAILURES_TABLE";
/// `M365_LEDGER_TABLE`: the idempotency ledger table.
pub const LEDGER_TABLE: &str = "M365_LEDGER_TABLE";
/// `M365_RETRY_QUEUE_URL`: URL of the SQS retry queue.
pub const RETRY_QUEUE_URL: &str = "M365_RETRY_QUEUE_URL";
/// `M365_NOTIFICATIONS_QUEUE_URL`: URL of the SQS notifications queue.
pub const NOTIFICATIONS_QUEUE_URL: &str = "M365_NOTIFICATIONS_QUEUE_URL";
/// `M365_TENANT_SECRET_PREFIX`: name prefix of the per-tenant token secrets, e.g.
/// `m365-sync/dev/tenant/`.
pub const TENANT_SECRET_PREFIX: &str = "M365_TENANT_SECRET_PREFIX";
/// `M365_SEAL_KEY_SECRET_ID`: name or ARN of the password seal key secret.
pub const SEAL_KEY_SECRET_ID: &str = "M365_SEAL_KEY_SECRET_ID";
/// `M365_OAUTH_CLIENT_SECRET_ID`: name or ARN of the OAuth client credentials secret.
pub const OAUTH_CLIENT_SECRET_ID: &str = "M365_OAUTH_CLIENT_SECRET_ID";
/// `M365_CURSOR_KEY_SECRET_ID`: name or ARN of the secret whose value (at least 32 characters)
/// signs every pagination cursor (R-SAFE-1). Only the functions that list things read it.
pub const CURSOR_KEY_SECRET_ID: &str = "M365_CURSOR_KEY_SECRET_ID";
/// `M365_SECRETS_KMS_KEY_ID` (optional): the KMS key (id, ARN or alias) new tenant token secrets
/// are encrypted with — the stack's own key (R-SAFE-4). Unset or blank: Secrets Manager's
/// default key, as on the local stack (devstack cannot create KMS keys).
pub const SECRETS_KMS_KEY_ID: &str = "M365_SECRETS_KMS_KEY_ID";
/// `M365_ADMIN_ALERTS_TOPIC_ARN` (optional): the ARN of the SNS topic admin alerts are published
/// to (R-OPS-1, `AdminAlertsTopic` in `template.yaml`); unset: alerts are only logged.
pub const ADMIN_ALERTS_TOPIC_ARN: &str = "M365_ADMIN_ALERTS_TOPIC_ARN";

/// `M365_PASSWORD_MIN_LENGTH` (optional): the directory password policy's minimum length, 8
/// (Entra's minimum, the default) to 256 (R-PWD-1).
pub const PASSWORD_MIN_LENGTH: &str = "M365_PASSWORD_MIN_LENGTH";
/// `M365_PASSWORD_REQUIRED_CLASSES` (optional): the character classes every password must
/// contain besides Entra's three of four, comma-separated among `lowercase`, `uppercase`,
/// `digit`, `symbol`; unset or blank: none (R-PWD-1).
pub const PASSWORD_REQUIRED_CLASSES: &str = "M365_PASSWORD_REQUIRED_CLASSES";
/// `M365_PASSWORD_MAX_AGE_DAYS` (optional): the directory password policy's maximum age in
/// decimal days (e.g. `0.5` = 12 hours, so a rehearsal can expire a password within seconds), at
/// most 36,500; unset or `0`: passwords never expire (R-PWD-4, R-BIND-9).
pub const PASSWORD_MAX_AGE_DAYS: &str = "M365_PASSWORD_MAX_AGE_DAYS";

/// `M365_RETRY_MAX_ATTEMPTS` (optional): consecutive retryable failures before an operation gives
/// up with its binding in `error`, 1 to 100 (default 8).
pub const RETRY_MAX_ATTEMPTS: &str = "M365_RETRY_MAX_ATTEMPTS";
/// `M365_RETRY_BASE_DELAY_SECONDS` (optional): the first backoff, doubled per attempt, in decimal
/// seconds, above 0 and at most `M365_RETRY_MAX_DELAY_SECONDS` (default 2).
pub const RETRY_BASE_DELAY_SECONDS: &str = "M365_RETRY_BASE_DELAY_SECONDS";
/// `M365_RETRY_MAX_DELAY_SECONDS` (optional): the longest backoff between two attempts, in decimal
/// seconds, above 0 and at most 86,400 (default 900).
pub const RETRY_MAX_DELAY_SECONDS: &str = "M365_RETRY_MAX_DELAY_SECONDS";

/// `M365_GRAPH_BASE_URL` (optional): Graph base URL with its version segment (e.g.
/// `http://127.0.0.1:8080/v1.0` for the m365-emulator; default Microsoft's).
pub const GRAPH_BASE_URL: &str = "M365_GRAPH_BASE_URL";
/// `M365_IDENTITY_BASE_URL` (optional): identity platform base URL (default Microsoft's).
pub const IDENTITY_BASE_URL: &str = "M365_IDENTITY_BASE_URL";
/// `M365_OAUTH_REDIRECT_URI` (optional): the connect callback URL registered in the app
/// (default: the OAuth client secret's `redirect_uri`).
pub const OAUTH_REDIRECT_URI: &str = "M365_OAUTH_REDIRECT_URI";
/// `M365_GRAPH_WRITE_LIMIT` (optional): Graph's write limit per app and tenant, in writes per
/// window (default 3,000).
pub const GRAPH_WRITE_LIMIT: &str = "M365_GRAPH_WRITE_LIMIT";
/// `M365_GRAPH_WRITE_WINDOW_SECONDS` (optional): the window of that limit (default 150).
pub const GRAPH_WRITE_WINDOW_SECONDS: &str = "M365_GRAPH_WRITE_WINDOW_SECONDS";
/// `M365_GRAPH_WRITE_SHARE` (optional): the share of that limit the rate budget grants,
/// 0 < share ≤ 1 (default 0.95).
pub const GRAPH_WRITE_SHARE: &str = "M365_GRAPH_WRITE_SHARE";
/// `M365_DEADLINE_MARGIN_SECONDS` (optional): time kept back from the Lambda deadline for the
/// final writes and the answer, decimal seconds above 0 and at most 300 (default 5; R-OPS-2).
pub const DEADLINE_MARGIN_SECONDS: &str = "M365_DEADLINE_MARGIN_SECONDS";
/// `M365_DEADLINE_MESSAGE_FLOOR_SECONDS` (optional): least work time left for the retry worker to
/// take the next message of its batch, decimal seconds from 0 to 300 (default 5).
pub const DEADLINE_MESSAGE_FLOOR_SECONDS: &str = "M365_DEADLINE_MESSAGE_FLOOR_SECONDS";

/// `M365_RECONCILE_QUEUE_URL` (the reconcile function's, required there): URL of the queue of
/// reconcile passes.
pub const RECONCILE_QUEUE_URL: &str = "M365_RECONCILE_QUEUE_URL";
/// `M365_RECONCILE_SAFEGUARD` (optional): the most users one reconcile round may block, suspend
/// or remove, group member removals included, before its plan is held (R-REC-3): a percentage of
/// the tenant's bound users (`10%`, the default) or a whole number (`500`).
pub const RECONCILE_SAFEGUARD: &str = "M365_RECONCILE_SAFEGUARD";
/// `M365_RECONCILE_SAFEGUARD_RATIO` (optional, deprecated): the former threshold, a share from 0
/// to 1 (`0.25` is `25%`). Still accepted so an override set before [`RECONCILE_SAFEGUARD`]
/// existed keeps working; when set it wins over [`RECONCILE_SAFEGUARD`] (which the template sets
/// to its default), and an invalid value is a configuration error. Use
/// [`RECONCILE_SAFEGUARD`] instead.
pub const RECONCILE_SAFEGUARD_RATIO: &str = "M365_RECONCILE_SAFEGUARD_RATIO";
/// `M365_RECONCILE_MAX_PAGES` (optional): delta pages read by one reconcile pass, 1 to 10,000
/// (default 50).
pub const RECONCILE_MAX_PAGES: &str = "M365_RECONCILE_MAX_PAGES";

/// `M365_WELCOME_SENDER` (the notify function's, required there): the address welcome emails are
/// sent from, an SES identity (the `WelcomeSenderAddress` stack parameter; R-NOT-1).
pub const WELCOME_SENDER: &str = "M365_WELCOME_SENDER";
/// `M365_WELCOME_SUBJECT` (optional): the welcome email's subject; `{displayName}`,
/// `{signInAddress}` and `{tenantName}` are filled in (default
/// [`WelcomeTemplate::DEFAULT_SUBJECT`]).
pub const WELCOME_SUBJECT: &str = "M365_WELCOME_SUBJECT";
/// `M365_WELCOME_BODY` (optional): the welcome email's plain-text body, the same placeholders,
/// `\n` for a line break (default [`WelcomeTemplate::DEFAULT_BODY`]).
pub const WELCOME_BODY: &str = "M365_WELCOME_BODY";

/// Every variable [`Config::from_env`] requires, in the order problems are reported.
pub const REQUIRED: [&str; 12] = [
    USERS_TABLE,
    TENANTS_TABLE,
    BINDINGS_TABLE,
    EVENTS_TABLE,
    FAILURES_TABLE,
    LEDGER_TABLE,
    RETRY_QUEUE_URL,
    NOTIFICATIONS_QUEUE_URL,
    TENANT_SECRET_PREFIX,
    SEAL_KEY_SECRET_ID,
    OAUTH_CLIENT_SECRET_ID,
    CURSOR_KEY_SECRET_ID,
];

/// The optional variables `template.yaml` sets for every function (`Globals`): the KMS key and
/// the deployment's policies (from stack Parameters, whose defaults are the code's).
pub const OPTIONAL: [&str; 8] = [
    SECRETS_KMS_KEY_ID,
    ADMIN_ALERTS_TOPIC_ARN,
    PASSWORD_MIN_LENGTH,
    PASSWORD_REQUIRED_CLASSES,
    PASSWORD_MAX_AGE_DAYS,
    RETRY_MAX_ATTEMPTS,
    RETRY_BASE_DELAY_SECONDS,
    RETRY_MAX_DELAY_SECONDS,
];

/// The optional variables read when set but not set by `template.yaml`: a local stack points
/// Graph at the emulator with them, a tuning deployment may set the rest.
pub const LOCAL: [&str; 8] = [
    GRAPH_BASE_URL,
    IDENTITY_BASE_URL,
    OAUTH_REDIRECT_URI,
    GRAPH_WRITE_LIMIT,
    GRAPH_WRITE_WINDOW_SECONDS,
    GRAPH_WRITE_SHARE,
    DEADLINE_MARGIN_SECONDS,
    DEADLINE_MESSAGE_FLOOR_SECONDS,
];

/// The variables of the reconcile function's section ([`Section::Reconcile`]).
pub const RECONCILE: [&str; 3] = [
    RECONCILE_QUEUE_URL,
    RECONCILE_SAFEGUARD,
    RECONCILE_MAX_PAGES,
];

/// The variables of the notify function's section ([`Section::Notify`]).
pub const NOTIFY: [&str; 3] = [WELCOME_SENDER, WELCOME_SUBJECT, WELCOME_BODY];

/// A function-specific section a function asks for: its required variables are then checked
/// with every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The reconcile function's: [`RECONCILE`].
    Reconcile,
    /// The notify function's: [`NOTIFY`] (R-NOT-1).
    Notify,
}

/// The configuration every function runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Names of the AWS resources the adapters use.
    pub resources: Resources,
    /// Name or ARN of the OAuth client credentials secret (read by the Graph side).
    pub oauth_client_secret_id: String,
    /// Where Graph and the identity platform are, the callback URL, the write budget.
    pub graph: GraphConfig,
    /// The directory password policy (R-PWD-1, R-PWD-4): the one source of the minimum length,
    /// the required classes and password expiry.
    pub password_policy: DirectoryPasswordPolicy,
    /// The retry policy's knobs ([`Config::retry_policy`]).
    pub retry: RetryConfig,
    /// How the time before the Lambda deadline is spent.
    pub deadlines: DeadlinePolicy,
    /// The reconcile function's section, when asked for or its queue is set.
    pub reconcile: Option<ReconcileConfig>,
    /// The notify function's section, when asked for or its sender is set (R-NOT-1).
    pub notify: Option<NotifyConfig>,
    /// The SNS topic admin alerts go to (R-OPS-1); `None`: alerts are only logged.
    pub admin_alerts_topic_arn: Option<String>,
}

/// The notify function's section (R-NOT-1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// The welcome email's sender, subject and body, checked.
    pub template: WelcomeTemplate,
}

/// Where Graph and the identity platform are, and the callback URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphConfig {
    /// Graph base URL (default `https://graph.microsoft.com/v1.0`).
    pub graph_base: Option<String>,
    /// Identity platform base URL (default `https://login.microsoftonline.com`).
    pub identity_base: Option<String>,
    /// Redirect URI of the connect flow (default: the OAuth client secret's `redirect_uri`).
    pub redirect_uri: Option<String>,
    /// The rate budget of every tenant: a share of Graph's write limit.
    pub write_budget: WriteBudgetConfig,
}

/// Graph's write limit per app and tenant and the share of it the rate budget grants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteBudgetConfig {
    /// Graph's limit (default [`RateLimit::GRAPH_WRITES`]).
    pub graph_limit: RateLimit,
    /// The share granted, 0 < share ≤ 1 (default [`RateLimit::DEFAULT_SHARE`]).
    pub share: f64,
}

impl Default for WriteBudgetConfig {
    fn default() -> Self {
        Self {
            graph_limit: RateLimit::GRAPH_WRITES,
            share: RateLimit::DEFAULT_SHARE,
        }
    }
}

impl Eq for WriteBudgetConfig {}

impl WriteBudgetConfig {
    /// The limit of every tenant's bucket.
    #[must_use]
    pub fn limit(&self) -> RateLimit {
        self.graph_limit.scaled(self.share)
    }
}

/// The retry policy's knobs a deployment can set; the rest of [`RetryPolicy`] keeps its
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Consecutive retryable failures before an operation gives up.
    pub max_attempts: u32,
    /// First backoff; doubled per attempt.
    pub base_delay: Duration,
    /// Longest backoff between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    /// [`RetryPolicy::default`]'s values.
    fn default() -> Self {
        let policy = RetryPolicy::default();
        Self {
            max_attempts: policy.max_attempts,
            base_delay: policy.base_delay,
            max_delay: policy.max_delay,
        }
    }
}

impl RetryConfig {
    /// The retry policy with these knobs and the defaults of the rest.
    #[must_use]
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            base_delay: self.base_delay,
            max_delay: self.max_delay,
            ..RetryPolicy::default()
        }
    }
}

/// The reconcile function's section.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileConfig {
    /// URL of the queue of reconcile passes.
    pub queue_url: String,
    /// The most users one round may block, suspend or remove (`10%` or `500`).
    pub safeguard: m365_engine::policy::safeguard::Safeguard,
    /// Delta pages read by one pass.
    pub max_pages: u32,
}

/// The reconcile knobs' defaults: the engine's (`ReconcileSettings::default`).
fn reconcile_defaults() -> (m365_engine::policy::safeguard::Safeguard, u32) {
    let settings = m365_engine::usecase::reconcile::ReconcileSettings::default();
    (settings.safeguard, settings.max_pages)
}

/// What is wrong with one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The variable is not set, or set to an empty or blank value.
    Missing,
    /// The variable is set but its value is not usable; the text says why (never the value
    /// itself, which could be a secret put in the wrong place).
    Invalid(&'static str),
}

/// One error listing every missing or invalid variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", Listing(.problems))]
pub struct ConfigError {
    /// Each variable in trouble, with its problem, in reading order ([`REQUIRED`] first).
    pub problems: Vec<(&'static str, Problem)>,
}

struct Listing<'a>(&'a [(&'static str, Problem)]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, problem)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match problem {
                Problem::Missing => write!(f, "{name} is missing")?,
                Problem::Invalid(why) => write!(f, "{name} is invalid ({why})")?,
            }
        }
        Ok(())
    }
}

/// Reads variables through a lookup, collecting every problem.
struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<(&'static str, Problem)>,
}

impl Reader<'_> {
    /// The trimmed value, `None` when unset or blank.
    fn value(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A required variable, checked; empty (after recording the problem) when missing.
    fn required(
        &mut self,
        name: &'static str,
        check: fn(&str) -> Result<(), &'static str>,
    ) -> String {
        let Some(value) = self.value(name) else {
            self.problems.push((name, Problem::Missing));
            return String::new();
        };
        if let Err(why) = check(&value) {
            self.problems.push((name, Problem::Invalid(why)));
        }
        value
    }

    /// An optional variable parsed by `parse`; `None` when unset or refused (the refusal
    /// recorded).
    fn optional<T>(
        &mut self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<T> {
        let value = self.value(name)?;
        match parse(&value) {
            Ok(parsed) => Some(parsed),
            Err(why) => {
                self.problems.push((name, Problem::Invalid(why)));
                None
            }
        }
    }

    fn invalid(&mut self, name: &'static str, why: &'static str) {
        self.problems.push((name, Problem::Invalid(why)));
    }
}

impl Config {
    /// Reads the configuration from the process environment (no function-specific section
    /// required).
    ///
    /// # Errors
    /// [`ConfigError`] listing every missing or invalid variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_for(&[])
    }

    /// Reads the configuration from the process environment, with the `sections` a function
    /// needs.
    ///
    /// # Errors
    /// [`ConfigError`] listing every missing or invalid variable.
    pub fn from_env_for(sections: &[Section]) -> Result<Self, ConfigError> {
        Self::read(|name| std::env::var(name).ok(), sections)
    }

    /// Reads the configuration from any name → value lookup (tests pass a map), no
    /// function-specific section required.
    ///
    /// # Errors
    /// [`ConfigError`] listing every missing or invalid variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(lookup, &[])
    }

    /// Reads the configuration from any lookup, with the `sections` a function needs: every
    /// problem of every section in one error.
    ///
    /// # Errors
    /// [`ConfigError`] listing every missing or invalid variable.
    pub fn read(
        lookup: impl Fn(&str) -> Option<String>,
        sections: &[Section],
    ) -> Result<Self, ConfigError> {
        let mut r = Reader {
            lookup: &lookup,
            problems: Vec::new(),
        };
        let users_table = r.required(USERS_TABLE, table_name);
        let tenants_table = r.required(TENANTS_TABLE, table_name);
        let bindings_table = r.required(BINDINGS_TABLE, table_name);
        let events_table = r.required(EVENTS_TABLE, table_name);
        let failures_table = r.required(FAILURES_TABLE, table_name);
        let ledger_table = r.required(LEDGER_TABLE, table_name);
        let retry_queue_url = r.required(RETRY_QUEUE_URL, queue_url);
        let notifications_queue_url = r.required(NOTIFICATIONS_QUEUE_URL, queue_url);
        let tenant_secret_prefix = r.required(TENANT_SECRET_PREFIX, secret_prefix);
        let seal_key_secret_id = r.required(SEAL_KEY_SECRET_ID, secret_id);
        let oauth_client_secret_id = r.required(OAUTH_CLIENT_SECRET_ID, secret_id);
        let cursor_key_secret_id = r.required(CURSOR_KEY_SECRET_ID, secret_id);
        let secrets_kms_key_id =
            r.optional(SECRETS_KMS_KEY_ID, |v| kms_key_id(v).map(|()| v.to_owned()));
        let admin_alerts_topic_arn = r.optional(ADMIN_ALERTS_TOPIC_ARN, |v| {
            let parts: Vec<&str> = v.split(':').collect();
            if parts.len() == 6 && parts[0] == "arn" && parts[2] == "sns" && !parts[5].is_empty() {
                Ok(v.to_owned())
            } else {
                Err("an SNS topic ARN (arn:<partition>:sns:<region>:<account>:<name>)")
            }
        });
        let password_policy = read_password_policy(&mut r);
        let retry = read_retry(&mut r);
        let graph = read_graph(&mut r);
        let deadlines = read_deadlines(&mut r);
        let reconcile = read_reconcile(&mut r, sections.contains(&Section::Reconcile));
        let notify = read_notify(&mut r, sections.contains(&Section::Notify));
        if !r.problems.is_empty() {
            return Err(ConfigError {
                problems: r.problems,
            });
        }
        Ok(Self {
            resources: Resources {
                users_table,
                tenants_table,
                bindings_table,
                events_table,
                failures_table,
                ledger_table,
                retry_queue_url,
                notifications_queue_url,
                tenant_secret_prefix,
                seal_key_secret_id,
                cursor_key_secret_id,
                secrets_kms_key_id,
            },
            oauth_client_secret_id,
            graph,
            password_policy,
            retry,
            deadlines,
            reconcile,
            notify,
            admin_alerts_topic_arn,
        })
    }

    /// A configuration of known resources with every other section at its default (the
    /// integration tests' harness builds its world this way).
    #[must_use]
    pub fn with_resources(resources: Resources, oauth_client_secret_id: String) -> Self {
        Self {
            resources,
            oauth_client_secret_id,
            graph: GraphConfig::default(),
            password_policy: DirectoryPasswordPolicy::default(),
            retry: RetryConfig::default(),
            deadlines: DeadlinePolicy::default(),
            reconcile: None,
            notify: None,
            admin_alerts_topic_arn: None,
        }
    }

    /// The retry policy of every use case: the configured knobs, the defaults of the rest.
    #[must_use]
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry.policy()
    }

    /// The notify function's section (R-NOT-1).
    ///
    /// # Errors
    /// [`ConfigError`] naming [`WELCOME_SENDER`] as missing when the configuration was read
    /// without it (a function that did not ask for [`Section::Notify`]).
    pub fn notify(&self) -> Result<&NotifyConfig, ConfigError> {
        self.notify.as_ref().ok_or_else(|| ConfigError {
            problems: vec![(WELCOME_SENDER, Problem::Missing)],
        })
    }

    /// The reconcile function's section.
    ///
    /// # Errors
    /// [`ConfigError`] naming [`RECONCILE_QUEUE_URL`] as missing when the configuration was
    /// read without it (a function that did not ask for [`Section::Reconcile`]).
    pub fn reconcile(&self) -> Result<&ReconcileConfig, ConfigError> {
        self.reconcile.as_ref().ok_or_else(|| ConfigError {
            problems: vec![(RECONCILE_QUEUE_URL, Problem::Missing)],
        })
    }
}

/// The directory password policy; defaults: Entra's minimum, no required class, no expiry.
fn read_password_policy(r: &mut Reader<'_>) -> DirectoryPasswordPolicy {
    let default = DirectoryPasswordPolicy::default();
    let min_length = r
        .optional(PASSWORD_MIN_LENGTH, |v| {
            v.parse::<usize>()
                .ok()
                .filter(|n| (default.min_length()..=ENTRA_MAX_LENGTH).contains(n))
                .ok_or("a whole number of characters from 8 (Entra's minimum) to 256")
        })
        .unwrap_or(default.min_length());
    let classes = r
        .optional(PASSWORD_REQUIRED_CLASSES, char_classes)
        .unwrap_or_else(|| default.required_classes().clone());
    let max_age = r
        .optional(PASSWORD_MAX_AGE_DAYS, max_age_days)
        .unwrap_or(default.max_age());
    // Every value was checked above, so the policy's own checks cannot refuse it; the default
    // stands only if they ever disagree (and that is then reported).
    match DirectoryPasswordPolicy::new(min_length, classes, max_age) {
        Ok(policy) => policy,
        Err(_) => {
            r.invalid(
                PASSWORD_MIN_LENGTH,
                "the directory password policy refused it",
            );
            default
        }
    }
}

/// `lowercase,uppercase,digit,symbol` (any subset, any order, any case).
fn char_classes(value: &str) -> Result<BTreeSet<CharClass>, &'static str> {
    const WHY: &str = "a comma-separated list of lowercase, uppercase, digit, symbol";
    value
        .split(',')
        .map(|item| {
            let item = item.trim().to_ascii_lowercase();
            CharClass::ALL
                .into_iter()
                .find(|class| class.as_str() == item)
                .ok_or(WHY)
        })
        .collect()
}

/// Decimal days from 0 to 36,500 (a century); 0: no expiry.
fn max_age_days(value: &str) -> Result<Option<chrono::TimeDelta>, &'static str> {
    const WHY: &str = "a number of days from 0 (no expiry) to 36500, decimals allowed";
    let days: f64 = value.parse().map_err(|_| WHY)?;
    if !days.is_finite() || !(0.0..=36_500.0).contains(&days) {
        return Err(WHY);
    }
    // At most 36,500 days in milliseconds: far inside i64.
    #[allow(clippy::cast_possible_truncation)]
    let millis = (days * 86_400_000.0).round() as i64;
    Ok((millis > 0).then(|| chrono::TimeDelta::milliseconds(millis)))
}

/// Decimal seconds within `range`, as a duration.
fn seconds(
    value: &str,
    range: std::ops::RangeInclusive<f64>,
    above_zero: bool,
    why: &'static str,
) -> Result<Duration, &'static str> {
    let secs: f64 = value.parse().map_err(|_| why)?;
    if !secs.is_finite() || !range.contains(&secs) || (above_zero && secs <= 0.0) {
        return Err(why);
    }
    Duration::try_from_secs_f64(secs).map_err(|_| why)
}

/// The retry knobs; defaults: [`RetryPolicy::default`]'s.
fn read_retry(r: &mut Reader<'_>) -> RetryConfig {
    let default = RetryConfig::default();
    let max_attempts = r
        .optional(RETRY_MAX_ATTEMPTS, |v| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or("a whole number of attempts from 1 to 100")
        })
        .unwrap_or(default.max_attempts);
    let base_delay = r.optional(RETRY_BASE_DELAY_SECONDS, |v| {
        seconds(
            v,
            0.0..=86_400.0,
            true,
            "a number of seconds above 0, decimals allowed",
        )
    });
    let max_delay = r
        .optional(RETRY_MAX_DELAY_SECONDS, |v| {
            seconds(
                v,
                0.0..=86_400.0,
                true,
                "a number of seconds above 0 and at most 86400, decimals allowed",
            )
        })
        .unwrap_or(default.max_delay);
    let base_delay = match base_delay {
        Some(base) if base > max_delay => {
            r.invalid(
                RETRY_BASE_DELAY_SECONDS,
                "the first delay must not exceed the longest (M365_RETRY_MAX_DELAY_SECONDS, default 900)",
            );
            default.base_delay
        }
        Some(base) => base,
        // The default first delay under a configured longest one shorter than it: the longest.
        None => default.base_delay.min(max_delay),
    };
    RetryConfig {
        max_attempts,
        base_delay,
        max_delay,
    }
}

/// The Graph section; defaults: Microsoft's hosts, the secret's redirect URI, 95 % of Graph's
/// write limit.
fn read_graph(r: &mut Reader<'_>) -> GraphConfig {
    let defaults = WriteBudgetConfig::default();
    let url = |v: &str| http_url(v).map(|()| v.to_owned());
    let graph_base = r.optional(GRAPH_BASE_URL, url);
    let identity_base = r.optional(IDENTITY_BASE_URL, url);
    let redirect_uri = r.optional(OAUTH_REDIRECT_URI, url);
    let capacity = r
        .optional(GRAPH_WRITE_LIMIT, |v| {
            v.parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or("a whole number of writes above 0")
        })
        .unwrap_or(defaults.graph_limit.capacity);
    let window = r
        .optional(GRAPH_WRITE_WINDOW_SECONDS, |v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .map(Duration::from_secs)
                .ok_or("a whole number of seconds above 0")
        })
        .unwrap_or(defaults.graph_limit.window);
    let share = r
        .optional(GRAPH_WRITE_SHARE, |v| {
            v.parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0 && *s <= 1.0)
                .ok_or("a share above 0 and at most 1")
        })
        .unwrap_or(defaults.share);
    GraphConfig {
        graph_base,
        identity_base,
        redirect_uri,
        write_budget: WriteBudgetConfig {
            graph_limit: RateLimit { capacity, window },
            share,
        },
    }
}

/// The deadline policy; defaults: [`DeadlinePolicy::default`]'s.
fn read_deadlines(r: &mut Reader<'_>) -> DeadlinePolicy {
    let default = DeadlinePolicy::default();
    let margin = r
        .optional(DEADLINE_MARGIN_SECONDS, |v| {
            seconds(
                v,
                0.0..=300.0,
                true,
                "a number of seconds above 0 and at most 300, decimals allowed",
            )
        })
        .unwrap_or(default.margin);
    let message_floor = r
        .optional(DEADLINE_MESSAGE_FLOOR_SECONDS, |v| {
            seconds(
                v,
                0.0..=300.0,
                false,
                "a number of seconds from 0 to 300, decimals allowed",
            )
        })
        .unwrap_or(default.message_floor);
    DeadlinePolicy {
        margin,
        message_floor,
    }
}

/// The reconcile section: read when `needed` (its queue then required) or when its queue is
/// set; its knobs are checked whenever set.
fn read_reconcile(r: &mut Reader<'_>, needed: bool) -> Option<ReconcileConfig> {
    let (default_safeguard, default_pages) = reconcile_defaults();
    let queue = if needed {
        Some(r.required(RECONCILE_QUEUE_URL, queue_url))
    } else {
        r.optional(RECONCILE_QUEUE_URL, |v| queue_url(v).map(|()| v.to_owned()))
    };
    let safeguard = r
        .optional(RECONCILE_SAFEGUARD, |v| {
            v.parse::<m365_engine::policy::safeguard::Safeguard>()
                .map_err(|_| {
                    "a percentage from 0% to 100% (e.g. 10%) or a whole number of changes (e.g. 500)"
                })
        })
        .unwrap_or(default_safeguard);
    // The deprecated spelling, when set, is the operator's explicit choice.
    let safeguard = r
        .optional(RECONCILE_SAFEGUARD_RATIO, |v| {
            m365_engine::policy::safeguard::Safeguard::from_ratio(v).map_err(
                |_| "a share from 0 to 1 (deprecated: use M365_RECONCILE_SAFEGUARD, e.g. 10%)",
            )
        })
        .unwrap_or(safeguard);
    let max_pages = r
        .optional(RECONCILE_MAX_PAGES, |v| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or("a whole number of pages from 1 to 10000")
        })
        .unwrap_or(default_pages);
    queue.map(|queue_url| ReconcileConfig {
        queue_url,
        safeguard,
        max_pages,
    })
}

/// The notify section: read when `needed` (its sender then required) or when its sender is set.
/// The template is checked whole ([`WelcomeTemplate::new`]); a problem is reported on the
/// variable it comes from.
fn read_notify(r: &mut Reader<'_>, needed: bool) -> Option<NotifyConfig> {
    let sender = if needed {
        Some(r.required(WELCOME_SENDER, |_| Ok(())))
    } else {
        r.value(WELCOME_SENDER)
    }?;
    let subject = r
        .value(WELCOME_SUBJECT)
        .unwrap_or_else(|| WelcomeTemplate::DEFAULT_SUBJECT.to_owned());
    let body = r
        .value(WELCOME_BODY)
        .unwrap_or_else(|| WelcomeTemplate::DEFAULT_BODY.to_owned());
    // A missing sender is reported above; the subject and body are still checked (with a
    // stand-in sender), so one start lists every problem.
    let missing = sender.is_empty();
    let checked = if missing {
        "sender@example.com"
    } else {
        &sender
    };
    match WelcomeTemplate::new(checked, &subject, &body) {
        Ok(_) if missing => None,
        Ok(template) => Some(NotifyConfig { template }),
        Err(e) => {
            let (name, why) = template_problem(&e);
            r.invalid(name, why);
            None
        }
    }
}

/// The variable a template problem comes from, and why (never the text itself).
fn template_problem(e: &TemplateError) -> (&'static str, &'static str) {
    let part = |part: &str| {
        if part == "subject" {
            WELCOME_SUBJECT
        } else {
            WELCOME_BODY
        }
    };
    match e {
        TemplateError::Sender(_) => (WELCOME_SENDER, "an email address (an SES identity)"),
        TemplateError::Empty { part: p } => (part(p), "must not be empty"),
        TemplateError::TooLong { part: p, .. } => (
            part(p),
            "too long (subject at most 256 characters, body at most 2000)",
        ),
        TemplateError::ControlCharacter { part: p, .. } => (
            part(p),
            "holds a control character (the subject none; the body only \\n line breaks and tabs)",
        ),
        TemplateError::UnknownPlaceholder { part: p } => (
            part(p),
            "has an unknown or unclosed placeholder (allowed: {displayName}, {signInAddress}, {tenantName})",
        ),
    }
}

/// `Ok` when `holds`, else the `rule` the value breaks.
fn rule(holds: bool, rule: &'static str) -> Result<(), &'static str> {
    if holds { Ok(()) } else { Err(rule) }
}

/// Whether `value` has only ASCII letters, digits and the characters of `extra`.
fn alphanumeric_or(value: &str, extra: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// Graph, identity platform and redirect URLs are absolute http(s) URLs.
fn http_url(value: &str) -> Result<(), &'static str> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    rule(
        rest.is_some_and(|r| !r.is_empty()) && !value.contains(char::is_whitespace),
        "an absolute URL starting with https:// or http://",
    )
}

/// DynamoDB table names: 3–255 characters of `[A-Za-z0-9_.-]`.
fn table_name(value: &str) -> Result<(), &'static str> {
    rule(
        (3..=255).contains(&value.len()) && alphanumeric_or(value, "_-."),
        "a DynamoDB table name has 3-255 characters of A-Z a-z 0-9 _ - .",
    )
}

/// SQS queue URLs are absolute http(s) URLs.
fn queue_url(value: &str) -> Result<(), &'static str> {
    rule(
        (value.starts_with("https://") || value.starts_with("http://")) && !value.contains(' '),
        "an SQS queue URL starts with https:// or http://",
    )
}

/// Tenant secret names are the prefix plus the tenant id, so the prefix ends with `/`.
fn secret_prefix(value: &str) -> Result<(), &'static str> {
    rule(
        value.ends_with('/') && secret_id(value).is_ok(),
        "a secret name prefix uses A-Z a-z 0-9 /_+=.@- and ends with /",
    )
}

/// KMS key references: a key id (UUID or `mrk-…`), a key ARN, `alias/<name>` or an alias ARN.
fn kms_key_id(value: &str) -> Result<(), &'static str> {
    rule(
        !value.is_empty() && value.len() <= 2048 && alphanumeric_or(value, "/_-:"),
        "a KMS key id, key ARN, alias name or alias ARN",
    )
}

/// Secrets Manager names (and ARNs) use `A-Za-z0-9/_+=.@-` (and `:` in ARNs).
fn secret_id(value: &str) -> Result<(), &'static str> {
    rule(
        value.len() <= 2048 && alphanumeric_or(value, "/_+=.@-:"),
        "a secret name or ARN uses A-Z a-z 0-9 /_+=.@-:",
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn complete() -> HashMap<&'static str, String> {
        HashMap::from([
            (USERS_TABLE, "m365-sync-dev-users".to_owned()),
            (TENANTS_TABLE, "m365-sync-dev-tenants".to_owned()),
            (BINDINGS_TABLE, "m365-sync-dev-bindings".to_owned()),
            (EVENTS_TABLE, "m365-sync-dev-events".to_owned()),
            (FAILURES_TABLE, "m365-sync-dev-failures".to_owned()),
            (LEDGER_TABLE, "m365-sync-dev-ledger".to_owned()),
            (
                RETRY_QUEUE_URL,
                "https://sqs.eu-west-1.amazonaws.com/123456789012/m365-sync-dev-retry".to_owned(),
            ),
            (
                NOTIFICATIONS_QUEUE_URL,
                "https://sqs.eu-west-1.amazonaws.com/123456789012/m365-sync-dev-notifications"
                    .to_owned(),
            ),
            (TENANT_SECRET_PREFIX, "m365-sync/dev/tenant/".to_owned()),
            (SEAL_KEY_SECRET_ID, "m365-sync/dev/seal-key".to_owned()),
            (
                OAUTH_CLIENT_SECRET_ID,
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:m365-sync/dev/oauth-client-AbCdEf"
                    .to_owned(),
            ),
            (CURSOR_KEY_SECRET_ID, "m365-sync/dev/cursor-key".to_owned()),
        ])
    }

    fn read(env: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| env.get(name).cloned())
    }

    #[test]
    fn a_complete_environment_gives_every_resource_name() {
        let config = read(&complete()).expect("complete environment");
        assert_eq!(config.resources.users_table, "m365-sync-dev-users");
        assert_eq!(config.resources.tenants_table, "m365-sync-dev-tenants");
        assert_eq!(config.resources.bindings_table, "m365-sync-dev-bindings");
        assert_eq!(config.resources.events_table, "m365-sync-dev-events");
        assert_eq!(config.resources.failures_table, "m365-sync-dev-failures");
        assert_eq!(config.resources.ledger_table, "m365-sync-dev-ledger");
        assert!(
            config
                .resources
                .retry_queue_url
                .ends_with("/m365-sync-dev-retry")
        );
        assert_eq!(
            config.resources.tenant_secret_prefix,
            "m365-sync/dev/tenant/"
        );
        assert_eq!(
            config.resources.seal_key_secret_id,
            "m365-sync/dev/seal-key"
        );
        assert!(
            config
                .oauth_client_secret_id
                .starts_with("arn:aws:secretsmanager:")
        );
    }

    #[test]
    fn an_empty_environment_is_one_error_naming_every_variable() {
        let error = read(&HashMap::new()).expect_err("nothing is set");
        let names: Vec<_> = error.problems.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, REQUIRED.to_vec());
        assert!(error.problems.iter().all(|(_, p)| *p == Problem::Missing));
        let message = error.to_string();
        for name in REQUIRED {
            assert!(message.contains(name), "{name} missing from: {message}");
        }
    }

    #[test]
    fn missing_and_invalid_variables_are_reported_together() {
        let mut env = complete();
        env.remove(EVENTS_TABLE);
        env.insert(LEDGER_TABLE, "   ".to_owned());
        env.insert(RETRY_QUEUE_URL, "m365-sync-dev-retry".to_owned());
        env.insert(TENANT_SECRET_PREFIX, "m365-sync/dev/tenant".to_owned());
        let error = read(&env).expect_err("four problems");
        assert_eq!(error.problems.len(), 4, "{error}");
        assert_eq!(error.problems[0], (EVENTS_TABLE, Problem::Missing));
        assert_eq!(error.problems[1], (LEDGER_TABLE, Problem::Missing));
        assert!(matches!(
            error.problems[2],
            (RETRY_QUEUE_URL, Problem::Invalid(_))
        ));
        assert!(matches!(
            error.problems[3],
            (TENANT_SECRET_PREFIX, Problem::Invalid(_))
        ));
    }

    #[test]
    fn an_invalid_value_is_not_echoed_in_the_error() {
        let mut env = complete();
        env.insert(
            SEAL_KEY_SECRET_ID,
            "not a secret id but a pasted key: s3cr3t!".to_owned(),
        );
        let error = read(&env).expect_err("invalid secret id");
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
        assert!(error.to_string().contains(SEAL_KEY_SECRET_ID));
    }

    #[test]
    fn table_names_outside_dynamodb_rules_are_refused() {
        for bad in ["ab", "users table", "users/table", &"x".repeat(256)] {
            let mut env = complete();
            env.insert(USERS_TABLE, bad.to_owned());
            let error = read(&env).expect_err(bad);
            assert!(
                matches!(error.problems[..], [(USERS_TABLE, Problem::Invalid(_))]),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_secrets_kms_key_is_optional_and_checked_when_given() {
        // R-SAFE-4
        let config = read(&complete()).expect("complete without a KMS key");
        assert_eq!(config.resources.secrets_kms_key_id, None);
        assert_eq!(
            config.resources.cursor_key_secret_id,
            "m365-sync/dev/cursor-key"
        );
        let mut env = complete();
        env.insert(SECRETS_KMS_KEY_ID, "  ".to_owned());
        assert_eq!(
            read(&env)
                .expect("blank is unset")
                .resources
                .secrets_kms_key_id,
            None
        );
        let arn = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        env.insert(SECRETS_KMS_KEY_ID, arn.to_owned());
        assert_eq!(
            read(&env)
                .expect("an ARN")
                .resources
                .secrets_kms_key_id
                .as_deref(),
            Some(arn)
        );
        env.insert(SECRETS_KMS_KEY_ID, "not a key id!".to_owned());
        let error = read(&env).expect_err("invalid");
        assert!(matches!(
            error.problems[..],
            [(SECRETS_KMS_KEY_ID, Problem::Invalid(_))]
        ));
        assert!(!error.to_string().contains("not a key id"), "{error}");
    }

    #[test]
    fn the_admin_alerts_topic_is_optional_and_must_be_an_sns_topic_arn() {
        // R-OPS-1 (unset: alerts are only logged)
        assert_eq!(
            read(&complete()).expect("complete").admin_alerts_topic_arn,
            None
        );
        let arn = "arn:aws:sns:eu-west-1:123456789012:m365-sync-dev-admin-alerts";
        let config = read(&with(&[(ADMIN_ALERTS_TOPIC_ARN, arn)])).expect("an SNS ARN");
        assert_eq!(config.admin_alerts_topic_arn.as_deref(), Some(arn));
        for wrong in [
            "AdminAlertsTopic",
            "arn:aws:sqs:eu-west-1:123456789012:queue",
            "arn:aws:sns:eu-west-1:123456789012:",
        ] {
            let error = read(&with(&[(ADMIN_ALERTS_TOPIC_ARN, wrong)])).expect_err(wrong);
            assert!(matches!(
                error.problems[..],
                [(ADMIN_ALERTS_TOPIC_ARN, Problem::Invalid(_))]
            ));
        }
    }

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        let mut env = complete();
        env.insert(USERS_TABLE, " m365-sync-dev-users\n".to_owned());
        let config = read(&env).expect("trimmed");
        assert_eq!(config.resources.users_table, "m365-sync-dev-users");
    }

    fn with(pairs: &[(&'static str, &str)]) -> HashMap<&'static str, String> {
        let mut env = complete();
        for (name, value) in pairs {
            env.insert(name, (*value).to_owned());
        }
        env
    }

    #[test]
    fn every_optional_section_defaults_to_todays_behaviour() {
        // R-PWD-1, R-PWD-4, R-OPS-2
        let config = read(&complete()).expect("complete environment");
        assert_eq!(config.password_policy, DirectoryPasswordPolicy::default());
        assert_eq!(config.password_policy.min_length(), 8);
        assert!(config.password_policy.required_classes().is_empty());
        assert_eq!(config.password_policy.max_age(), None);
        assert_eq!(config.retry_policy(), RetryPolicy::default());
        assert_eq!(config.deadlines, DeadlinePolicy::default());
        assert_eq!(config.graph, GraphConfig::default());
        assert_eq!(config.graph.write_budget.limit().capacity, 2_850);
        assert_eq!(config.reconcile, None);
        let unused = Config::with_resources(config.resources.clone(), "x".to_owned());
        assert_eq!(unused.password_policy, config.password_policy);
        assert_eq!(unused.retry, config.retry);
    }

    #[test]
    fn the_directory_password_policy_is_read_whole_from_its_three_variables() {
        // R-PWD-1, R-PWD-4: one source for the length, the classes and expiry.
        let config = read(&with(&[
            (PASSWORD_MIN_LENGTH, "14"),
            (PASSWORD_REQUIRED_CLASSES, " Symbol, digit ,digit"),
            (PASSWORD_MAX_AGE_DAYS, "90"),
        ]))
        .expect("a stricter policy");
        let policy = &config.password_policy;
        assert_eq!(policy.min_length(), 14);
        assert_eq!(
            policy
                .required_classes()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![CharClass::Digit, CharClass::Symbol]
        );
        assert_eq!(policy.max_age(), Some(chrono::TimeDelta::days(90)));
        let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        assert!(policy.is_expired(at, at + chrono::TimeDelta::days(90)));
        assert!(!policy.is_expired(at, at + chrono::TimeDelta::days(89)));
    }

    #[test]
    fn the_password_max_age_is_read_in_decimal_days_and_bad_values_are_refused() {
        // R-BIND-9, R-PWD-4
        let age = |raw: &str| {
            read(&with(&[(PASSWORD_MAX_AGE_DAYS, raw)]))
                .map(|c| c.password_policy.max_age())
                .map_err(|e| e.problems)
        };
        assert_eq!(age("0"), Ok(None));
        assert_eq!(age(" 0.5 "), Ok(Some(chrono::TimeDelta::hours(12))));
        assert_eq!(
            age("0.0004"),
            Ok(Some(chrono::TimeDelta::milliseconds(34_560)))
        );
        for bad in ["-1", "x", "NaN", "inf", "36501"] {
            assert!(
                matches!(
                    age(bad).as_ref().map_err(Vec::as_slice),
                    Err([(PASSWORD_MAX_AGE_DAYS, Problem::Invalid(_))])
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn retry_knobs_are_read_and_the_rest_of_the_retry_policy_keeps_its_defaults() {
        // R-BIND-6
        let config = read(&with(&[
            (RETRY_MAX_ATTEMPTS, "3"),
            (RETRY_BASE_DELAY_SECONDS, "0.5"),
            (RETRY_MAX_DELAY_SECONDS, "60"),
        ]))
        .expect("valid knobs");
        let policy = config.retry_policy();
        assert_eq!(policy.max_attempts, 3);
        assert_eq!(policy.base_delay, Duration::from_millis(500));
        assert_eq!(policy.max_delay, Duration::from_secs(60));
        assert_eq!(policy.lease, RetryPolicy::default().lease);
        assert_eq!(policy.address_wait, RetryPolicy::default().address_wait);
        // A longest delay below the default first one caps the first one too.
        let short = read(&with(&[(RETRY_MAX_DELAY_SECONDS, "1")])).expect("valid cap");
        assert_eq!(short.retry.base_delay, Duration::from_secs(1));
    }

    #[test]
    fn deadlines_and_the_graph_write_budget_are_read_when_set() {
        // R-OPS-2, DESIGN §2 "Graph usage"
        let config = read(&with(&[
            (DEADLINE_MARGIN_SECONDS, "2.5"),
            (DEADLINE_MESSAGE_FLOOR_SECONDS, "0"),
            (GRAPH_BASE_URL, " http://127.0.0.1:8080/v1.0 "),
            (IDENTITY_BASE_URL, "  "),
            (GRAPH_WRITE_LIMIT, "60"),
            (GRAPH_WRITE_WINDOW_SECONDS, "10"),
            (GRAPH_WRITE_SHARE, "0.9"),
        ]))
        .expect("valid");
        assert_eq!(config.deadlines.margin, Duration::from_millis(2_500));
        assert_eq!(config.deadlines.message_floor, Duration::ZERO);
        assert_eq!(
            config.graph.graph_base.as_deref(),
            Some("http://127.0.0.1:8080/v1.0")
        );
        assert_eq!(config.graph.identity_base, None, "blank is unset");
        assert_eq!(
            config.graph.write_budget.limit(),
            RateLimit {
                capacity: 54,
                window: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn every_bad_optional_value_is_listed_with_the_missing_required_ones() {
        // One error, every problem: nothing is silently ignored any more.
        let mut env = with(&[
            (PASSWORD_MIN_LENGTH, "7"),
            (PASSWORD_REQUIRED_CLASSES, "digit,emoji"),
            (RETRY_MAX_ATTEMPTS, "0"),
            (RETRY_BASE_DELAY_SECONDS, "1000"),
            (GRAPH_BASE_URL, "graph.microsoft.com"),
            (GRAPH_WRITE_LIMIT, "0"),
            (GRAPH_WRITE_WINDOW_SECONDS, "soon"),
            (GRAPH_WRITE_SHARE, "1.5"),
            (DEADLINE_MARGIN_SECONDS, "0"),
            (DEADLINE_MESSAGE_FLOOR_SECONDS, "-1"),
            (RECONCILE_SAFEGUARD, "1.5"),
            (RECONCILE_MAX_PAGES, "0"),
        ]);
        env.remove(USERS_TABLE);
        let error = read(&env).expect_err("thirteen problems");
        let names: Vec<_> = error.problems.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            vec![
                USERS_TABLE,
                PASSWORD_MIN_LENGTH,
                PASSWORD_REQUIRED_CLASSES,
                RETRY_MAX_ATTEMPTS,
                RETRY_BASE_DELAY_SECONDS,
                GRAPH_BASE_URL,
                GRAPH_WRITE_LIMIT,
                GRAPH_WRITE_WINDOW_SECONDS,
                GRAPH_WRITE_SHARE,
                DEADLINE_MARGIN_SECONDS,
                DEADLINE_MESSAGE_FLOOR_SECONDS,
                RECONCILE_SAFEGUARD,
                RECONCILE_MAX_PAGES,
            ]
        );
        assert_eq!(error.problems[0].1, Problem::Missing);
        assert!(
            error.problems[1..]
                .iter()
                .all(|(_, p)| matches!(p, Problem::Invalid(_)))
        );
        let message = error.to_string();
        for name in names {
            assert!(message.contains(name), "{name} missing from: {message}");
        }
        assert!(!message.contains("emoji"), "{message}");
    }

    #[test]
    fn a_function_asking_for_the_reconcile_section_gets_its_queue_named_when_missing() {
        // R-REC-1
        let error = Config::read(|_| None, &[Section::Reconcile]).expect_err("nothing set");
        let names: Vec<_> = error.problems.iter().map(|(name, _)| *name).collect();
        let mut expected = REQUIRED.to_vec();
        expected.push(RECONCILE_QUEUE_URL);
        assert_eq!(names, expected);

        let without = read(&complete()).expect("not asked for");
        let missing = without.reconcile().expect_err("no section");
        assert_eq!(
            missing.problems,
            vec![(RECONCILE_QUEUE_URL, Problem::Missing)]
        );
        assert!(missing.to_string().contains(RECONCILE_QUEUE_URL));

        let queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/m365-sync-dev-reconcile";
        let env = with(&[(RECONCILE_QUEUE_URL, queue), (RECONCILE_MAX_PAGES, "7")]);
        let config =
            Config::read(|name| env.get(name).cloned(), &[Section::Reconcile]).expect("complete");
        let section = config.reconcile().expect("the section");
        assert_eq!(section.queue_url, queue);
        assert_eq!(section.max_pages, 7);
        assert_eq!(section.safeguard.to_string(), "10%");
        let bad = with(&[(RECONCILE_QUEUE_URL, "m365-sync-dev-reconcile")]);
        let error = Config::read(|name| bad.get(name).cloned(), &[Section::Reconcile])
            .expect_err("not a URL");
        assert!(matches!(
            error.problems[..],
            [(RECONCILE_QUEUE_URL, Problem::Invalid(_))]
        ));
    }

    #[test]
    fn the_notify_section_checks_the_welcome_template_at_cold_start() {
        // R-NOT-1: a missing sender or a bad template is named with every other problem
        let error = Config::read(|_| None, &[Section::Notify]).expect_err("nothing set");
        let names: Vec<_> = error.problems.iter().map(|(name, _)| *name).collect();
        let mut expected = REQUIRED.to_vec();
        expected.push(WELCOME_SENDER);
        assert_eq!(names, expected);
        let bad_subject =
            |name: &str| (name == WELCOME_SUBJECT).then(|| "Hi {password}".to_owned());
        let error = Config::read(bad_subject, &[Section::Notify]).expect_err("nothing set");
        assert!(
            error.problems.ends_with(&[
                (WELCOME_SENDER, Problem::Missing),
                (
                    WELCOME_SUBJECT,
                    Problem::Invalid(
                        template_problem(&TemplateError::UnknownPlaceholder { part: "subject" }).1
                    )
                ),
            ]),
            "{error}"
        );
        assert!(read(&complete()).expect("not asked for").notify().is_err());

        let read_notify = |pairs: &[(&'static str, &str)]| {
            let env = with(pairs);
            Config::read(|name| env.get(name).cloned(), &[Section::Notify])
        };
        let config = read_notify(&[(WELCOME_SENDER, "welcome@contoso.com")]).expect("defaults");
        let template = &config.notify().expect("the section").template;
        assert_eq!(template.sender().as_str(), "welcome@contoso.com");
        assert_eq!(
            template,
            &WelcomeTemplate::new(
                "welcome@contoso.com",
                WelcomeTemplate::DEFAULT_SUBJECT,
                WelcomeTemplate::DEFAULT_BODY
            )
            .expect("the defaults are valid")
        );
        for (pairs, bad) in [
            (vec![(WELCOME_SENDER, "not an address")], WELCOME_SENDER),
            (
                vec![
                    (WELCOME_SENDER, "w@contoso.com"),
                    (WELCOME_SUBJECT, "Hi {password}"),
                ],
                WELCOME_SUBJECT,
            ),
            (
                vec![(WELCOME_SENDER, "w@contoso.com"), (WELCOME_BODY, "{oops")],
                WELCOME_BODY,
            ),
        ] {
            let error = read_notify(&pairs).expect_err("refused");
            assert!(
                matches!(error.problems[..], [(name, Problem::Invalid(_))] if name == bad),
                "{error}"
            );
            assert!(!error.to_string().contains("password"), "{error}");
        }
    }

    #[test]
    fn the_safeguard_takes_a_percentage_or_a_number_refuses_the_rest_and_reads_the_old_ratio() {
        // R-REC-3
        use m365_engine::policy::safeguard::Safeguard;
        let queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/m365-sync-dev-reconcile";
        let section = |value: Option<(&'static str, &'static str)>| {
            let mut vars = vec![(RECONCILE_QUEUE_URL, queue)];
            vars.extend(value);
            let env = with(&vars);
            Config::read(|name| env.get(name).cloned(), &[Section::Reconcile])
        };
        let pct = section(Some((RECONCILE_SAFEGUARD, "25%"))).expect("a percentage");
        assert_eq!(
            pct.reconcile().expect("the section").safeguard,
            Safeguard::Share(0.25)
        );
        let abs = section(Some((RECONCILE_SAFEGUARD, "500"))).expect("a number");
        assert_eq!(
            abs.reconcile().expect("the section").safeguard,
            Safeguard::Absolute(500)
        );
        for bad in ["ten", "150%", "0.1", "-3"] {
            let env = with(&[(RECONCILE_QUEUE_URL, queue), (RECONCILE_SAFEGUARD, bad)]);
            let error =
                Config::read(|name| env.get(name).cloned(), &[Section::Reconcile]).expect_err(bad);
            assert!(
                matches!(
                    error.problems[..],
                    [(RECONCILE_SAFEGUARD, Problem::Invalid(_))]
                ),
                "{bad}: {error}"
            );
            assert!(error.to_string().contains("10%"), "{error}");
        }
        // The deprecated ratio is still read, and wins over the new variable when both are set.
        let old = section(Some((RECONCILE_SAFEGUARD_RATIO, "0.25"))).expect("deprecated");
        assert_eq!(
            old.reconcile().expect("the section").safeguard,
            Safeguard::Share(0.25)
        );
        let env = with(&[
            (RECONCILE_QUEUE_URL, queue),
            (RECONCILE_SAFEGUARD, "10%"),
            (RECONCILE_SAFEGUARD_RATIO, "0.25"),
        ]);
        let both =
            Config::read(|name| env.get(name).cloned(), &[Section::Reconcile]).expect("both valid");
        assert_eq!(
            both.reconcile().expect("the section").safeguard,
            Safeguard::Share(0.25)
        );
        let bad = section(Some((RECONCILE_SAFEGUARD_RATIO, "1.5"))).expect_err("not a share");
        assert!(matches!(
            bad.problems[..],
            [(RECONCILE_SAFEGUARD_RATIO, Problem::Invalid(_))]
        ));
        assert!(bad.to_string().contains(RECONCILE_SAFEGUARD), "{bad}");
    }

    #[test]
    fn every_variable_list_names_distinct_variables() {
        let all: Vec<&str> = REQUIRED
            .iter()
            .chain(&OPTIONAL)
            .chain(&LOCAL)
            .chain(&RECONCILE)
            .chain(&NOTIFY)
            .copied()
            .collect();
        let distinct: BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len());
        assert!(all.iter().all(|name| name.starts_with("M365_")));
    }
}
