//! The functions' typed configuration, read from environment variables once per cold start.
//!
//! Every variable is checked before anything starts: a missing or invalid variable is
//! reported together with all the others in one [`ConfigError`], so a deployment with a
//! wrong environment fails with the whole list at once, not one variable per attempt.
//! The names are set for every function by `Globals.Function.Environment` in `template.yaml`:
//! the [`REQUIRED`] ones and the [`OPTIONAL`] ones (which a local stack may leave unset).

use std::fmt;

use m365_aws::Resources;

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

/// The variables [`Config::from_env`] reads when set (checked like the others when given).
pub const OPTIONAL: [&str; 1] = [SECRETS_KMS_KEY_ID];

/// The configuration every function runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Names of the AWS resources the adapters use.
    pub resources: Resources,
    /// Name or ARN of the OAuth client credentials secret (read by the Graph side).
    pub oauth_client_secret_id: String,
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
    /// Each variable in trouble, with its problem, in [`REQUIRED`] order.
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

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] listing every missing or invalid variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration from any name → value lookup (tests pass a map).
    ///
    /// # Errors
    /// [`ConfigError`] listing every missing or invalid variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut get =
            |name: &'static str, check: fn(&str) -> Result<(), &'static str>| match lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
            {
                None => {
                    problems.push((name, Problem::Missing));
                    String::new()
                }
                Some(value) => {
                    if let Err(why) = check(&value) {
                        problems.push((name, Problem::Invalid(why)));
                    }
                    value
                }
            };
        let users = get(USERS_TABLE, table_name);
        let tenants = get(TENANTS_TABLE, table_name);
        let bindings = get(BINDINGS_TABLE, table_name);
        let events = get(EVENTS_TABLE, table_name);
        let failures = get(FAILURES_TABLE, table_name);
        let ledger = get(LEDGER_TABLE, table_name);
        let retry_queue_url = get(RETRY_QUEUE_URL, queue_url);
        let notifications_queue_url = get(NOTIFICATIONS_QUEUE_URL, queue_url);
        let tenant_secret_prefix = get(TENANT_SECRET_PREFIX, secret_prefix);
        let seal_key_secret_id = get(SEAL_KEY_SECRET_ID, secret_id);
        let oauth_client_secret_id = get(OAUTH_CLIENT_SECRET_ID, secret_id);
        let cursor_key_secret_id = get(CURSOR_KEY_SECRET_ID, secret_id);
        let secrets_kms_key_id = lookup(SECRETS_KMS_KEY_ID)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        if secrets_kms_key_id
            .as_deref()
            .is_some_and(|v| kms_key_id(v).is_err())
        {
            problems.push((
                SECRETS_KMS_KEY_ID,
                Problem::Invalid("a KMS key id, key ARN, alias name or alias ARN"),
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(Self {
            resources: Resources {
                users_table: users,
                tenants_table: tenants,
                bindings_table: bindings,
                events_table: events,
                failures_table: failures,
                ledger_table: ledger,
                retry_queue_url,
                notifications_queue_url,
                tenant_secret_prefix,
                seal_key_secret_id,
                cursor_key_secret_id,
                secrets_kms_key_id,
            },
            oauth_client_secret_id,
        })
    }
}

/// DynamoDB table names: 3–255 characters of `[A-Za-z0-9_.-]`.
fn table_name(value: &str) -> Result<(), &'static str> {
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if (3..=255).contains(&value.len()) && ok_chars {
        Ok(())
    } else {
        Err("a DynamoDB table name has 3-255 characters of A-Z a-z 0-9 _ - .")
    }
}

/// SQS queue URLs are absolute http(s) URLs.
fn queue_url(value: &str) -> Result<(), &'static str> {
    if (value.starts_with("https://") || value.starts_with("http://")) && !value.contains(' ') {
        Ok(())
    } else {
        Err("an SQS queue URL starts with https:// or http://")
    }
}

/// Tenant secret names are the prefix plus the tenant id, so the prefix ends with `/`.
fn secret_prefix(value: &str) -> Result<(), &'static str> {
    if value.ends_with('/') && secret_id(value).is_ok() {
        Ok(())
    } else {
        Err("a secret name prefix uses A-Z a-z 0-9 /_+=.@- and ends with /")
    }
}

/// KMS key references: a key id (UUID or `mrk-…`), a key ARN, `alias/<name>` or an alias ARN.
fn kms_key_id(value: &str) -> Result<(), &'static str> {
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/_-:".contains(c));
    if !value.is_empty() && value.len() <= 2048 && ok_chars {
        Ok(())
    } else {
        Err("a KMS key id, key ARN, alias name or alias ARN")
    }
}

/// Secrets Manager names (and ARNs) use `A-Za-z0-9/_+=.@-` (and `:` in ARNs).
fn secret_id(value: &str) -> Result<(), &'static str> {
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-:".contains(c));
    if value.len() <= 2048 && ok_chars {
        Ok(())
    } else {
        Err("a secret name or ARN uses A-Z a-z 0-9 /_+=.@-:")
    }
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
    fn surrounding_whitespace_is_trimmed() {
        let mut env = complete();
        env.insert(USERS_TABLE, " m365-sync-dev-users\n".to_owned());
        let config = read(&env).expect("trimmed");
        assert_eq!(config.resources.users_table, "m365-sync-dev-users");
    }
}
