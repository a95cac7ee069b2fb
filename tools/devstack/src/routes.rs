//! HTTP API route matching, as API Gateway HTTP APIs do it: a route is a method (or `ANY`)
//! and a path whose segments are literals, `{param}`s or a final greedy `{param+}`; the most
//! specific matching route wins, and `$default` catches what nothing else matches.

use std::collections::BTreeMap;

/// One route of the local API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Upper-case method or `ANY`.
    pub method: String,
    /// Path template, or `None` for `$default`.
    pub path: Option<String>,
    /// Index of the function serving it.
    pub function: usize,
    /// Open without the bearer token (the template says `Authorizer: NONE`).
    pub public: bool,
}

impl Route {
    /// The API Gateway route key, e.g. `GET /users/{userId}` or `$default`.
    #[must_use]
    pub fn key(&self) -> String {
        match &self.path {
            Some(path) => format!("{} {path}", self.method),
            None => "$default".to_owned(),
        }
    }
}

/// A matched route with its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'a> {
    /// The route.
    pub route: &'a Route,
    /// `{param}` values (percent-decoding is left to the function, as API Gateway does).
    pub parameters: BTreeMap<String, String>,
}

/// Finds the route serving `method path`, preferring (as API Gateway) the route with more
/// literal segments, then one without a greedy segment, then an exact method over `ANY`.
#[must_use]
pub fn find<'a>(routes: &'a [Route], method: &str, path: &str) -> Option<Matched<'a>> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut best: Option<((usize, bool, bool, usize), Matched<'a>)> = None;
    for route in routes {
        if route.method != "ANY" && !route.method.eq_ignore_ascii_case(method) {
            continue;
        }
        let Some(template) = &route.path else {
            continue;
        };
        let Some((literals, greedy, parameters)) = match_path(template, &segments) else {
            continue;
        };
        let score = (literals, !greedy, route.method != "ANY", segments.len());
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, Matched { route, parameters }));
        }
    }
    best.map(|(_, m)| m).or_else(|| {
        routes
            .iter()
            .find(|r| r.path.is_none())
            .map(|route| Matched {
                route,
                parameters: BTreeMap::new(),
            })
    })
}

fn match_path(
    template: &str,
    segments: &[&str],
) -> Option<(usize, bool, BTreeMap<String, String>)> {
    let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let mut parameters = BTreeMap::new();
    let mut literals = 0;
    for (i, part) in parts.iter().enumerate() {
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if let Some(greedy) = name.strip_suffix('+') {
                if i + 1 != parts.len() || i >= segments.len() {
                    return None;
                }
                parameters.insert(greedy.to_owned(), segments[i..].join("/"));
                return Some((literals, true, parameters));
            }
            let value = segments.get(i).filter(|s| !s.is_empty())?;
            parameters.insert(name.to_owned(), (*value).to_owned());
        } else {
            if segments.get(i) != Some(part) {
                return None;
            }
            literals += 1;
        }
    }
    (parts.len() == segments.len()).then_some((literals, false, parameters))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn route(method: &str, path: &str, function: usize) -> Route {
        Route {
            method: method.to_owned(),
            path: Some(path.to_owned()),
            function,
            public: false,
        }
    }

    #[test]
    fn the_most_specific_route_wins_and_parameters_are_extracted() {
        let routes = vec![
            route("GET", "/users/{userId}", 0),
            route("GET", "/users/me", 1),
            route("ANY", "/files/{path+}", 2),
            route("POST", "/users/{userId}/password", 3),
        ];
        let m = find(&routes, "GET", "/users/u-1").unwrap();
        assert_eq!(m.route.function, 0);
        assert_eq!(m.parameters["userId"], "u-1");
        assert_eq!(find(&routes, "GET", "/users/me").unwrap().route.function, 1);
        let m = find(&routes, "DELETE", "/files/a/b.txt").unwrap();
        assert_eq!(
            (m.route.function, m.parameters["path"].as_str()),
            (2, "a/b.txt")
        );
        assert_eq!(
            find(&routes, "post", "/users/u-1/password")
                .unwrap()
                .route
                .function,
            3
        );
    }

    #[test]
    fn unknown_paths_and_methods_match_nothing_without_a_default_route() {
        let routes = vec![route("GET", "/users/{userId}", 0)];
        assert!(find(&routes, "POST", "/users/u-1").is_none());
        assert!(find(&routes, "GET", "/users").is_none());
        assert!(find(&routes, "GET", "/users/u-1/extra").is_none());
        let with_default = vec![
            route("GET", "/users/{userId}", 0),
            Route {
                method: "ANY".to_owned(),
                path: None,
                function: 9,
                public: false,
            },
        ];
        assert_eq!(
            find(&with_default, "GET", "/other").unwrap().route.function,
            9
        );
    }
}
