//! CloudFormation intrinsic functions, resolved against local names.
//!
//! `template.yaml` wires resources to each other with `!Ref`, `!Sub`, `!GetAtt` (and their
//! long forms `Ref`, `Fn::Sub`, `Fn::GetAtt`); devstack resolves them to the names, URLs and
//! ARNs of the resources it created on moto, exactly where CloudFormation would resolve them
//! to the deployed ones. A reference to a resource that is declared but not yet created is
//! reported as [`ResolveError::NotYet`], so creation can proceed in dependency order.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;
use serde_norway::Value as Yaml;

/// Why a template value could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The value refers to a declared resource whose local counterpart does not exist yet.
    #[error("resource {0} is not created yet")]
    NotYet(String),
    /// The value refers to a name that is neither a parameter, a pseudo parameter nor a
    /// resource of the template.
    #[error("unknown reference {0}")]
    Unknown(String),
    /// The value asks for an attribute devstack does not provide for that resource.
    #[error("unknown attribute {resource}.{attribute}")]
    UnknownAttribute {
        /// Logical id.
        resource: String,
        /// Attribute name.
        attribute: String,
    },
    /// An intrinsic function devstack does not implement.
    #[error("unsupported intrinsic function {0}")]
    Unsupported(String),
    /// An intrinsic function with arguments of the wrong shape.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// What references resolve to: parameters (with pseudo parameters such as `AWS::Region`),
/// and the `Ref` value and attributes of every created resource.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    parameters: BTreeMap<String, String>,
    refs: BTreeMap<String, String>,
    attributes: BTreeMap<(String, String), String>,
    declared: BTreeSet<String>,
}

impl Scope {
    /// A scope knowing which logical ids the template declares (references to them are
    /// [`ResolveError::NotYet`] until they are [`Scope::define`]d).
    #[must_use]
    pub fn new(
        parameters: BTreeMap<String, String>,
        declared: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            parameters,
            declared: declared.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Records what `Ref logical_id` and `GetAtt logical_id.<attribute>` resolve to.
    pub fn define(
        &mut self,
        logical_id: &str,
        reference: impl Into<String>,
        attributes: impl IntoIterator<Item = (&'static str, String)>,
    ) {
        self.refs.insert(logical_id.to_owned(), reference.into());
        for (name, value) in attributes {
            self.attributes
                .insert((logical_id.to_owned(), name.to_owned()), value);
        }
    }

    /// The value of a parameter or pseudo parameter.
    #[must_use]
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// Whether `Ref logical_id` is resolvable already.
    #[must_use]
    pub fn is_defined(&self, logical_id: &str) -> bool {
        self.refs.contains_key(logical_id)
    }

    fn reference(&self, name: &str) -> Result<String, ResolveError> {
        if let Some(value) = self.parameters.get(name) {
            return Ok(value.clone());
        }
        if let Some(value) = self.refs.get(name) {
            return Ok(value.clone());
        }
        if self.declared.contains(name) {
            return Err(ResolveError::NotYet(name.to_owned()));
        }
        Err(ResolveError::Unknown(name.to_owned()))
    }

    fn attribute(&self, resource: &str, attribute: &str) -> Result<String, ResolveError> {
        if let Some(value) = self
            .attributes
            .get(&(resource.to_owned(), attribute.to_owned()))
        {
            return Ok(value.clone());
        }
        if self.refs.contains_key(resource) {
            return Err(ResolveError::UnknownAttribute {
                resource: resource.to_owned(),
                attribute: attribute.to_owned(),
            });
        }
        if self.declared.contains(resource) {
            return Err(ResolveError::NotYet(resource.to_owned()));
        }
        Err(ResolveError::Unknown(resource.to_owned()))
    }

    /// Resolves every intrinsic function inside `value` and returns it as JSON (the shape
    /// resource properties have once CloudFormation has processed them).
    ///
    /// # Errors
    /// [`ResolveError`] when a reference cannot be resolved (yet) or a function is unknown.
    pub fn resolve(&self, value: &Yaml) -> Result<Json, ResolveError> {
        match value {
            Yaml::Null => Ok(Json::Null),
            Yaml::Bool(b) => Ok(Json::Bool(*b)),
            Yaml::Number(n) => Ok(number(n)),
            Yaml::String(s) => Ok(Json::String(s.clone())),
            Yaml::Sequence(items) => items
                .iter()
                .map(|item| self.resolve(item))
                .collect::<Result<Vec<_>, _>>()
                .map(Json::Array),
            Yaml::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                let name = tag.trim_start_matches('!');
                let function = if name == "Ref" {
                    "Ref".to_owned()
                } else {
                    format!("Fn::{name}")
                };
                self.intrinsic(&function, &tagged.value)
            }
            Yaml::Mapping(mapping) => {
                if mapping.len() == 1
                    && let Some((Yaml::String(key), argument)) = mapping.iter().next()
                    && (key == "Ref" || key.starts_with("Fn::"))
                {
                    return self.intrinsic(key, argument);
                }
                let mut object = serde_json::Map::new();
                for (key, item) in mapping {
                    let key = match key {
                        Yaml::String(s) => s.clone(),
                        Yaml::Number(n) => n.to_string(),
                        Yaml::Bool(b) => b.to_string(),
                        _ => return Err(ResolveError::Malformed("mapping key")),
                    };
                    object.insert(key, self.resolve(item)?);
                }
                Ok(Json::Object(object))
            }
        }
    }

    /// Resolves `value` to a string (numbers and booleans are written as CloudFormation
    /// passes them to resources: as text).
    ///
    /// # Errors
    /// [`ResolveError`] when resolution fails or the value is a list or a mapping.
    pub fn resolve_string(&self, value: &Yaml) -> Result<String, ResolveError> {
        scalar_text(&self.resolve(value)?).ok_or(ResolveError::Malformed("expected a string"))
    }

    fn intrinsic(&self, function: &str, argument: &Yaml) -> Result<Json, ResolveError> {
        match function {
            "Ref" => {
                let name = self.resolve_string(argument)?;
                Ok(Json::String(self.reference(&name)?))
            }
            "Fn::GetAtt" => {
                let (resource, attribute) = match self.resolve(argument)? {
                    Json::String(s) => match s.split_once('.') {
                        Some((r, a)) => (r.to_owned(), a.to_owned()),
                        None => return Err(ResolveError::Malformed("Fn::GetAtt")),
                    },
                    Json::Array(parts) => match parts.as_slice() {
                        [Json::String(r), Json::String(a)] => (r.clone(), a.clone()),
                        _ => return Err(ResolveError::Malformed("Fn::GetAtt")),
                    },
                    _ => return Err(ResolveError::Malformed("Fn::GetAtt")),
                };
                Ok(Json::String(self.attribute(&resource, &attribute)?))
            }
            "Fn::Sub" => {
                let (template, variables) = match argument {
                    Yaml::Sequence(parts) => match parts.as_slice() {
                        [template, variables] => {
                            let template = self.resolve_string(template)?;
                            let Json::Object(map) = self.resolve(variables)? else {
                                return Err(ResolveError::Malformed("Fn::Sub variables"));
                            };
                            let mut vars = BTreeMap::new();
                            for (k, v) in map {
                                let text = scalar_text(&v)
                                    .ok_or(ResolveError::Malformed("Fn::Sub variable"))?;
                                vars.insert(k, text);
                            }
                            (template, vars)
                        }
                        _ => return Err(ResolveError::Malformed("Fn::Sub")),
                    },
                    other => (self.resolve_string(other)?, BTreeMap::new()),
                };
                Ok(Json::String(self.substitute(&template, &variables)?))
            }
            "Fn::Join" => {
                let Json::Array(parts) = self.resolve(argument)? else {
                    return Err(ResolveError::Malformed("Fn::Join"));
                };
                let [Json::String(delimiter), Json::Array(items)] = parts.as_slice() else {
                    return Err(ResolveError::Malformed("Fn::Join"));
                };
                let texts = items
                    .iter()
                    .map(|item| scalar_text(item).ok_or(ResolveError::Malformed("Fn::Join item")))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Json::String(texts.join(delimiter)))
            }
            "Fn::Select" => {
                let Json::Array(parts) = self.resolve(argument)? else {
                    return Err(ResolveError::Malformed("Fn::Select"));
                };
                let [index, Json::Array(items)] = parts.as_slice() else {
                    return Err(ResolveError::Malformed("Fn::Select"));
                };
                let index = scalar_text(index)
                    .and_then(|t| t.parse::<usize>().ok())
                    .ok_or(ResolveError::Malformed("Fn::Select index"))?;
                items
                    .get(index)
                    .cloned()
                    .ok_or(ResolveError::Malformed("Fn::Select index"))
            }
            "Fn::Split" => {
                let Json::Array(parts) = self.resolve(argument)? else {
                    return Err(ResolveError::Malformed("Fn::Split"));
                };
                let [Json::String(delimiter), Json::String(text)] = parts.as_slice() else {
                    return Err(ResolveError::Malformed("Fn::Split"));
                };
                Ok(Json::Array(
                    text.split(delimiter.as_str())
                        .map(|s| Json::String(s.to_owned()))
                        .collect(),
                ))
            }
            other => Err(ResolveError::Unsupported(other.to_owned())),
        }
    }

    fn substitute(
        &self,
        template: &str,
        variables: &BTreeMap<String, String>,
    ) -> Result<String, ResolveError> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or(ResolveError::Malformed("Fn::Sub"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                // `${!Literal}` writes `${Literal}` verbatim.
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = variables.get(name) {
                out.push_str(value);
            } else if let Some((resource, attribute)) = name.split_once('.')
                && !name.starts_with("AWS::")
            {
                out.push_str(&self.attribute(resource, attribute)?);
            } else {
                out.push_str(&self.reference(name)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn number(n: &serde_norway::Number) -> Json {
    if let Some(i) = n.as_i64() {
        Json::from(i)
    } else if let Some(u) = n.as_u64() {
        Json::from(u)
    } else {
        n.as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Json::Null, Json::Number)
    }
}

/// The text of a scalar JSON value (strings as is, numbers and booleans written out).
#[must_use]
pub fn scalar_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn scope() -> Scope {
        let mut scope = Scope::new(
            BTreeMap::from([
                ("Stage".to_owned(), "dev".to_owned()),
                ("AWS::Region".to_owned(), "us-east-1".to_owned()),
            ]),
            ["Queue".to_owned(), "Dlq".to_owned(), "Later".to_owned()],
        );
        scope.define(
            "Queue",
            "http://moto/123/q",
            [("Arn", "arn:aws:sqs:us-east-1:123:q".to_owned())],
        );
        scope
    }

    fn yaml(text: &str) -> Yaml {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn ref_sub_and_getatt_resolve_in_short_and_long_forms() {
        let scope = scope();
        let value = yaml(
            "a: !Ref Queue\nb: !Sub m365-${Stage}-${AWS::Region}\nc: !GetAtt Queue.Arn\n\
             d: {Ref: Stage}\ne: {'Fn::GetAtt': [Queue, Arn]}\nf: !Sub '${Queue.Arn}/x ${!Keep}'\n\
             g: !Sub ['${X}-${Stage}', {X: !Ref Queue}]\nh: !Join ['-', [a, !Ref Stage]]\n\
             i: !Select [1, !Split [',', 'x,y']]\nj: 5",
        );
        let resolved = scope.resolve(&value).unwrap();
        assert_eq!(
            resolved,
            serde_json::json!({
                "a": "http://moto/123/q",
                "b": "m365-dev-us-east-1",
                "c": "arn:aws:sqs:us-east-1:123:q",
                "d": "dev",
                "e": "arn:aws:sqs:us-east-1:123:q",
                "f": "arn:aws:sqs:us-east-1:123:q/x ${Keep}",
                "g": "http://moto/123/q-dev",
                "h": "a-dev",
                "i": "y",
                "j": 5
            })
        );
    }

    #[test]
    fn references_to_declared_but_uncreated_resources_are_not_yet_and_unknown_names_fail() {
        let scope = scope();
        assert_eq!(
            scope.resolve(&yaml("!GetAtt Dlq.Arn")),
            Err(ResolveError::NotYet("Dlq".to_owned()))
        );
        assert_eq!(
            scope.resolve(&yaml("!Sub '${Later}'")),
            Err(ResolveError::NotYet("Later".to_owned()))
        );
        assert_eq!(
            scope.resolve(&yaml("!Ref Nowhere")),
            Err(ResolveError::Unknown("Nowhere".to_owned()))
        );
        assert!(matches!(
            scope.resolve(&yaml("!GetAtt Queue.Nope")),
            Err(ResolveError::UnknownAttribute { .. })
        ));
        assert_eq!(
            scope.resolve(&yaml("!If [c, a, b]")),
            Err(ResolveError::Unsupported("Fn::If".to_owned()))
        );
    }
}
