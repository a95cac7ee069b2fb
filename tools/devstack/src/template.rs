//! Reading `template.yaml`: parameters, globals, resources, and each function's binary,
//! timeout, environment and events once references are resolved.
//!
//! The template is the one source of truth for wiring: nothing about routes, queues,
//! schedules or environment variables is hard-coded in devstack.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value as Json;
use serde_norway::{Mapping, Value as Yaml};

use crate::intrinsic::{ResolveError, Scope, scalar_text};
use crate::schedule::{ScheduleError, ScheduleExpr};

/// The SAM function resource type.
pub const FUNCTION: &str = "AWS::Serverless::Function";

/// Why the template could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file could not be read.
    #[error("cannot read the template")]
    Read(#[from] std::io::Error),
    /// The file is not YAML.
    #[error("the template is not valid YAML")]
    Yaml(#[from] serde_norway::Error),
    /// A section has the wrong shape.
    #[error("template: {0}")]
    Shape(String),
    /// A reference could not be resolved.
    #[error("template: resolving {at}")]
    Resolve {
        /// Where in the template.
        at: String,
        /// Why.
        #[source]
        source: ResolveError,
    },
    /// A schedule expression devstack cannot run.
    #[error("template: schedule of {at}")]
    Schedule {
        /// Where in the template.
        at: String,
        /// Why.
        #[source]
        source: ScheduleError,
    },
}

/// One resource as declared.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Logical id.
    pub logical_id: String,
    /// `Type`, e.g. `AWS::SQS::Queue`.
    pub kind: String,
    /// `Properties` (intrinsics unresolved).
    pub properties: Mapping,
    /// `Metadata`.
    pub metadata: Mapping,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    /// Parameter defaults (a parameter without a default maps to `None`).
    pub parameters: BTreeMap<String, Option<String>>,
    /// `Globals.Function`.
    pub function_globals: Mapping,
    /// Resources in declaration order.
    pub resources: Vec<Resource>,
}

/// One event source of a function.
#[derive(Debug, Clone, PartialEq)]
pub enum EventSource {
    /// An `HttpApi` route; `None` path and method is the `$default` catch-all route.
    Http {
        /// Event name.
        name: String,
        /// Upper-case method, or `ANY`.
        method: String,
        /// Path with `{param}`s, or `None` for `$default`.
        path: Option<String>,
        /// `Auth.Authorizer: NONE`: the route is open (no bearer token locally).
        public: bool,
    },
    /// An `SQS` event source mapping.
    Sqs {
        /// Event name.
        name: String,
        /// ARN of the queue.
        queue_arn: String,
        /// Records per batch (at most 10 per receive here).
        batch_size: u32,
        /// `FunctionResponseTypes` contains `ReportBatchItemFailures`.
        report_batch_item_failures: bool,
    },
    /// A `Schedule` / `ScheduleV2` event.
    Schedule {
        /// Event name.
        name: String,
        /// When it fires.
        expression: ScheduleExpr,
        /// `Input`: the event sent instead of the scheduled event, as JSON text.
        input: Option<String>,
    },
}

/// A function resolved against the local resources.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Logical id.
    pub logical_id: String,
    /// Function name (`FunctionName`, or `<stack>-<logical id>`).
    pub name: String,
    /// The cargo binary running it.
    pub binary: String,
    /// `Timeout` (Globals, then function).
    pub timeout: Duration,
    /// `MemorySize` in MB.
    pub memory_mb: u32,
    /// Environment variables (Globals merged with the function's, references resolved).
    pub environment: BTreeMap<String, String>,
    /// Supported event sources.
    pub events: Vec<EventSource>,
    /// Event types present in the template that devstack does not run (warned at start).
    pub unsupported_events: Vec<String>,
}

impl Template {
    /// Reads and parses a template file.
    ///
    /// # Errors
    /// [`TemplateError`] when the file cannot be read or has an unexpected shape.
    pub fn read(path: &Path) -> Result<Self, TemplateError> {
        Self::parse(&std::fs::read_to_string(path)?)
    }

    /// Parses template text.
    ///
    /// # Errors
    /// [`TemplateError`] when the text is not YAML or has an unexpected shape.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let root: Yaml = serde_norway::from_str(text)?;
        let root = root
            .as_mapping()
            .ok_or_else(|| TemplateError::Shape("the template is not a mapping".into()))?;

        let mut parameters = BTreeMap::new();
        if let Some(section) = root.get("Parameters").and_then(Yaml::as_mapping) {
            for (name, declaration) in section {
                let name = key(name)?;
                let default = declaration
                    .get("Default")
                    .and_then(|d| scalar_text(&Scope::default().resolve(d).ok()?));
                parameters.insert(name, default);
            }
        }

        let function_globals = root
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(Yaml::as_mapping)
            .cloned()
            .unwrap_or_default();

        let section = root
            .get("Resources")
            .and_then(Yaml::as_mapping)
            .ok_or_else(|| TemplateError::Shape("no Resources section".into()))?;
        let mut resources = Vec::with_capacity(section.len());
        for (id, body) in section {
            let logical_id = key(id)?;
            let kind = body
                .get("Type")
                .and_then(Yaml::as_str)
                .ok_or_else(|| TemplateError::Shape(format!("{logical_id} has no Type")))?
                .to_owned();
            let properties = body
                .get("Properties")
                .and_then(Yaml::as_mapping)
                .cloned()
                .unwrap_or_default();
            let metadata = body
                .get("Metadata")
                .and_then(Yaml::as_mapping)
                .cloned()
                .unwrap_or_default();
            resources.push(Resource {
                logical_id,
                kind,
                properties,
                metadata,
            });
        }
        Ok(Self {
            parameters,
            function_globals,
            resources,
        })
    }

    /// The function resources.
    pub fn functions(&self) -> impl Iterator<Item = &Resource> {
        self.resources.iter().filter(|r| r.kind == FUNCTION)
    }

    /// The function name `Ref` resolves to: `FunctionName` when it is a literal, else
    /// `<stack>-<logical id>`.
    #[must_use]
    pub fn function_name(resource: &Resource, stack: &str) -> String {
        resource
            .properties
            .get("FunctionName")
            .and_then(Yaml::as_str)
            .map_or_else(|| format!("{stack}-{}", resource.logical_id), str::to_owned)
    }

    /// Resolves one function against `scope` (every resource it refers to must be defined).
    ///
    /// # Errors
    /// [`TemplateError`] when a reference cannot be resolved, the binary is not named, or an
    /// event is malformed.
    pub fn function_spec(
        &self,
        resource: &Resource,
        scope: &Scope,
        stack: &str,
    ) -> Result<FunctionSpec, TemplateError> {
        let id = &resource.logical_id;
        let resolve = |value: &Yaml, at: &str| {
            scope
                .resolve(value)
                .map_err(|source| TemplateError::Resolve {
                    at: format!("{id}.{at}"),
                    source,
                })
        };
        let setting = |name: &str| {
            resource
                .properties
                .get(name)
                .or_else(|| self.function_globals.get(name))
        };

        let timeout_s = match setting("Timeout") {
            Some(v) => integer(&resolve(v, "Timeout")?, id, "Timeout")?,
            None => 3, // the Lambda default
        };
        let memory_mb = match setting("MemorySize") {
            Some(v) => integer(&resolve(v, "MemorySize")?, id, "MemorySize")?,
            None => 128,
        };
        let memory_mb = u32::try_from(memory_mb)
            .map_err(|_| TemplateError::Shape(format!("{id}: MemorySize out of range")))?;

        let mut environment = BTreeMap::new();
        for source in [&self.function_globals, &resource.properties] {
            if let Some(vars) = source
                .get("Environment")
                .and_then(|e| e.get("Variables"))
                .and_then(Yaml::as_mapping)
            {
                for (name, value) in vars {
                    let name = key(name)?;
                    let value = resolve(value, &format!("Environment.{name}"))?;
                    let text = scalar_text(&value).ok_or_else(|| {
                        TemplateError::Shape(format!("{id}: variable {name} is not a scalar"))
                    })?;
                    environment.insert(name, text);
                }
            }
        }

        let binary = binary_name(resource)?;

        let mut events = Vec::new();
        let mut unsupported_events = Vec::new();
        if let Some(section) = resource.properties.get("Events").and_then(Yaml::as_mapping) {
            for (name, event) in section {
                let name = key(name)?;
                let kind = event.get("Type").and_then(Yaml::as_str).unwrap_or_default();
                let props = match event.get("Properties") {
                    Some(p) => resolve(p, &format!("Events.{name}"))?,
                    None => Json::Object(serde_json::Map::new()),
                };
                match kind {
                    "HttpApi" => {
                        let path = props.get("Path").and_then(Json::as_str).map(str::to_owned);
                        let method = props
                            .get("Method")
                            .and_then(Json::as_str)
                            .map_or_else(|| "ANY".to_owned(), str::to_ascii_uppercase);
                        let public = props
                            .get("Auth")
                            .and_then(|a| a.get("Authorizer"))
                            .and_then(Json::as_str)
                            == Some("NONE");
                        events.push(EventSource::Http {
                            name,
                            method,
                            path,
                            public,
                        });
                    }
                    "SQS" => {
                        if props.get("Enabled") == Some(&Json::Bool(false)) {
                            continue;
                        }
                        let queue_arn = props
                            .get("Queue")
                            .and_then(Json::as_str)
                            .ok_or_else(|| {
                                TemplateError::Shape(format!("{id}.{name}: SQS event has no Queue"))
                            })?
                            .to_owned();
                        let batch_size = match props.get("BatchSize") {
                            Some(v) => integer(v, id, "BatchSize")?,
                            None => 10,
                        };
                        let report_batch_item_failures = props
                            .get("FunctionResponseTypes")
                            .and_then(Json::as_array)
                            .is_some_and(|types| {
                                types.iter().any(|t| t == "ReportBatchItemFailures")
                            });
                        events.push(EventSource::Sqs {
                            name,
                            queue_arn,
                            batch_size: u32::try_from(batch_size.max(1)).unwrap_or(10),
                            report_batch_item_failures,
                        });
                    }
                    "Schedule" | "ScheduleV2" => {
                        let enabled = props.get("Enabled") != Some(&Json::Bool(false))
                            && props.get("State").and_then(Json::as_str) != Some("DISABLED");
                        if !enabled {
                            continue;
                        }
                        let text = props
                            .get("Schedule")
                            .or_else(|| props.get("ScheduleExpression"))
                            .and_then(Json::as_str)
                            .ok_or_else(|| {
                                TemplateError::Shape(format!("{id}.{name}: no schedule expression"))
                            })?;
                        let expression = ScheduleExpr::parse(text).map_err(|source| {
                            TemplateError::Schedule {
                                at: format!("{id}.{name}"),
                                source,
                            }
                        })?;
                        let input = props.get("Input").and_then(Json::as_str).map(str::to_owned);
                        events.push(EventSource::Schedule {
                            name,
                            expression,
                            input,
                        });
                    }
                    other => unsupported_events.push(format!("{name} ({other})")),
                }
            }
        }

        Ok(FunctionSpec {
            logical_id: id.clone(),
            name: Self::function_name(resource, stack),
            binary,
            timeout: Duration::from_secs(timeout_s),
            memory_mb,
            environment,
            events,
            unsupported_events,
        })
    }
}

/// The cargo binary of a function: `Metadata.BuildProperties.Binary`, else (with
/// `BuildMethod: rust-cargolambda`) the last folder of `CodeUri`, since package = binary =
/// folder name in this project.
fn binary_name(resource: &Resource) -> Result<String, TemplateError> {
    let metadata = &resource.metadata;
    if let Some(binary) = metadata
        .get("BuildProperties")
        .and_then(|p| p.get("Binary"))
        .and_then(Yaml::as_str)
    {
        return Ok(binary.to_owned());
    }
    if metadata.get("BuildMethod").and_then(Yaml::as_str) == Some("rust-cargolambda")
        && let Some(code_uri) = resource.properties.get("CodeUri").and_then(Yaml::as_str)
        && let Some(folder) = Path::new(code_uri).file_name().and_then(|f| f.to_str())
        && folder != "."
    {
        return Ok(folder.to_owned());
    }
    Err(TemplateError::Shape(format!(
        "{}: not a Rust function (no Metadata.BuildProperties.Binary and no \
         BuildMethod: rust-cargolambda with a CodeUri folder)",
        resource.logical_id
    )))
}

fn key(value: &Yaml) -> Result<String, TemplateError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| TemplateError::Shape("a mapping key is not a string".into()))
}

fn integer(value: &Json, id: &str, what: &str) -> Result<u64, TemplateError> {
    scalar_text(value)
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| TemplateError::Shape(format!("{id}: {what} is not a whole number")))
}
