//! OData query options as directory collections implement them (graph-spec §2.3, §2.4, §3.3):
//! `$select`, `$filter` (the supported subset), `$top` 1..999, opaque `$skiptoken` keyset
//! paging, `$count`, `$orderby`, `$search`, and the `ConsistencyLevel: eventual` gate.

use std::cmp::Ordering;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::GraphError;

/// The resource a collection holds, with the names Graph uses in its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `microsoft.graph.user`, "User" in directory messages.
    User,
    /// `microsoft.graph.group`, "Group" in directory messages.
    Group,
    /// `microsoft.graph.directoryRole`, "DirectoryRole" in directory messages (name assumed).
    DirectoryRole,
}

impl Resource {
    /// Name in directory error messages (`... of resource 'User'.`).
    #[must_use]
    pub fn directory_name(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
            Self::DirectoryRole => "DirectoryRole",
        }
    }

    /// OData type name.
    #[must_use]
    pub fn odata_type(self) -> &'static str {
        match self {
            Self::User => "microsoft.graph.user",
            Self::Group => "microsoft.graph.group",
            Self::DirectoryRole => "microsoft.graph.directoryRole",
        }
    }

    /// Every property name `$select` accepts.
    #[must_use]
    pub fn properties(self) -> &'static [&'static str] {
        match self {
            Self::User => USER_PROPERTIES,
            Self::Group => GROUP_PROPERTIES,
            Self::DirectoryRole => DIRECTORY_ROLE_PROPERTIES,
        }
    }

    /// Properties returned without `$select`.
    #[must_use]
    pub fn default_properties(self) -> &'static [&'static str] {
        match self {
            Self::User => USER_DEFAULT,
            Self::Group => GROUP_DEFAULT,
            Self::DirectoryRole => DIRECTORY_ROLE_PROPERTIES,
        }
    }
}

/// User properties (openapi/v1.0-property-notes.md, User section, structural properties).
pub const USER_PROPERTIES: &[&str] = &[
    "id",
    "deletedDateTime",
    "aboutMe",
    "accountEnabled",
    "ageGroup",
    "assignedLicenses",
    "assignedPlans",
    "birthday",
    "businessPhones",
    "city",
    "companyName",
    "consentProvidedForMinor",
    "country",
    "createdDateTime",
    "creationType",
    "department",
    "deviceEnrollmentLimit",
    "displayName",
    "employeeHireDate",
    "employeeId",
    "employeeLeaveDateTime",
    "employeeOrgData",
    "employeeType",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "faxNumber",
    "givenName",
    "hireDate",
    "identities",
    "imAddresses",
    "interests",
    "isManagementRestricted",
    "isResourceAccount",
    "jobTitle",
    "lastPasswordChangeDateTime",
    "legalAgeGroupClassification",
    "licenseAssignmentStates",
    "mail",
    "mailNickname",
    "mobilePhone",
    "mySite",
    "officeLocation",
    "onPremisesDistinguishedName",
    "onPremisesDomainName",
    "onPremisesExtensionAttributes",
    "onPremisesImmutableId",
    "onPremisesLastSyncDateTime",
    "onPremisesProvisioningErrors",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "onPremisesUserPrincipalName",
    "otherMails",
    "passwordPolicies",
    "passwordProfile",
    "pastProjects",
    "postalCode",
    "preferredDataLocation",
    "preferredLanguage",
    "preferredName",
    "provisionedPlans",
    "proxyAddresses",
    "responsibilities",
    "schools",
    "securityIdentifier",
    "serviceProvisioningErrors",
    "showInAddressList",
    "signInActivity",
    "signInSessionsValidFromDateTime",
    "skills",
    "state",
    "streetAddress",
    "surname",
    "usageLocation",
    "userPrincipalName",
    "userType",
];

/// `directoryRole` properties, all returned by default (Graph docs, `directoryRole` resource:
/// `id`, `deletedDateTime` from `directoryObject`, `description`, `displayName`, `roleTemplateId`).
pub const DIRECTORY_ROLE_PROPERTIES: &[&str] = &[
    "id",
    "deletedDateTime",
    "description",
    "displayName",
    "roleTemplateId",
];

/// Users' default projection (graph-spec §3.3; `securityIdentifier` left out, §13.13).
pub const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
];

/// Group properties (openapi/v1.0-property-notes.md, Group section, structural properties).
pub const GROUP_PROPERTIES: &[&str] = &[
    "id",
    "deletedDateTime",
    "allowExternalSenders",
    "assignedLabels",
    "assignedLicenses",
    "autoSubscribeNewMembers",
    "classification",
    "createdDateTime",
    "description",
    "displayName",
    "expirationDateTime",
    "groupTypes",
    "hasMembersWithLicenseErrors",
    "hideFromAddressLists",
    "hideFromOutlookClients",
    "isArchived",
    "isAssignableToRole",
    "isManagementRestricted",
    "isSubscribedByMail",
    "mail",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "membershipRuleProcessingState",
    "onPremisesDomainName",
    "onPremisesLastSyncDateTime",
    "onPremisesNetBiosName",
    "onPremisesProvisioningErrors",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "preferredDataLocation",
    "preferredLanguage",
    "proxyAddresses",
    "renewedDateTime",
    "resourceBehaviorOptions",
    "resourceProvisioningOptions",
    "securityEnabled",
    "securityIdentifier",
    "serviceProvisioningErrors",
    "theme",
    "uniqueName",
    "unseenCount",
    "visibility",
];

/// Groups' default projection (the create response of graph-spec §4.1).
pub const GROUP_DEFAULT: &[&str] = &[
    "id",
    "deletedDateTime",
    "classification",
    "createdDateTime",
    "description",
    "displayName",
    "expirationDateTime",
    "groupTypes",
    "isAssignableToRole",
    "mail",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "membershipRuleProcessingState",
    "onPremisesDomainName",
    "onPremisesLastSyncDateTime",
    "onPremisesNetBiosName",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "preferredDataLocation",
    "preferredLanguage",
    "proxyAddresses",
    "renewedDateTime",
    "resourceBehaviorOptions",
    "resourceProvisioningOptions",
    "securityEnabled",
    "securityIdentifier",
    "theme",
    "visibility",
    "onPremisesProvisioningErrors",
];

/// Collection-valued properties: absent means `[]`, not `null`.
const COLLECTIONS: &[&str] = &[
    "businessPhones",
    "assignedLicenses",
    "assignedPlans",
    "imAddresses",
    "otherMails",
    "proxyAddresses",
    "provisionedPlans",
    "identities",
    "interests",
    "pastProjects",
    "responsibilities",
    "schools",
    "skills",
    "onPremisesProvisioningErrors",
    "serviceProvisioningErrors",
    "licenseAssignmentStates",
    "groupTypes",
    "resourceBehaviorOptions",
    "resourceProvisioningOptions",
    "assignedLabels",
];

/// Projects an object's properties to `select` (or the default set).
#[must_use]
pub fn project(
    properties: &Map<String, Value>,
    resource: Resource,
    select: Option<&[String]>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let mut put = |name: &str| {
        let value = properties.get(name).cloned().unwrap_or_else(|| {
            if COLLECTIONS.contains(&name) {
                Value::Array(Vec::new())
            } else {
                Value::Null
            }
        });
        out.insert(name.to_owned(), value);
    };
    match select {
        Some(names) => names.iter().for_each(|n| put(n)),
        None => resource.default_properties().iter().for_each(|n| put(n)),
    }
    out
}

/// The parsed query options of one request.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// `$select`, validated against the resource.
    pub select: Option<Vec<String>>,
    /// `$filter`, parsed and validated.
    pub filter: Option<Expr>,
    /// `$top`.
    pub top: Option<usize>,
    /// `$skiptoken`, decoded.
    pub skip: Option<SkipToken>,
    /// `$count=true`.
    pub count: bool,
    /// `ConsistencyLevel: eventual` was sent (without it `$count=true` is silently ignored, §2.4).
    pub eventual: bool,
    /// `$orderby` property and descending flag.
    pub order_by: Option<(String, bool)>,
    /// `$search` terms: (property, text).
    pub search: Vec<(String, String)>,
    /// `$expand` present (costs an RU; not otherwise supported).
    pub expand: bool,
    /// The raw pairs, to rebuild nextLinks.
    pub raw: Vec<(String, String)>,
}

/// Decoded `$skiptoken`: the sort key and id of the last item of the previous page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SkipToken {
    /// Sort key of the last item.
    pub k: String,
    /// Id of the last item.
    pub i: String,
}

const SKIPTOKEN_PREFIX: &str = "RFNwdAIAAQAAA";

impl SkipToken {
    /// The opaque form.
    #[must_use]
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{SKIPTOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// Parses the opaque form.
    ///
    /// # Errors
    /// 400 `Request_BadRequest` for a token this emulator did not issue (message assumed).
    pub fn decode(token: &str) -> Result<Self, GraphError> {
        let bad = || GraphError::bad_request("Invalid skip token.");
        let body = token.strip_prefix(SKIPTOKEN_PREFIX).ok_or_else(bad)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| bad())?;
        serde_json::from_slice(&bytes).map_err(|_| bad())
    }
}

/// Whether the request carries `ConsistencyLevel: eventual`.
#[must_use]
pub fn eventual(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("consistencylevel")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("eventual"))
}

/// Looks up a query option by name, ignoring case (`$deltaToken` vs `$deltatoken`).
#[must_use]
pub fn param<'a>(raw: &'a [(String, String)], name: &str) -> Option<&'a str> {
    raw.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Query {
    /// Parses and validates the query options of a collection or entity request.
    ///
    /// # Errors
    /// The Graph errors of §2.3/§2.4/§3.3 for invalid `$top`, unknown `$select` properties,
    /// unsupported filters, and advanced queries without `ConsistencyLevel: eventual`.
    pub fn parse(
        raw: Vec<(String, String)>,
        resource: Resource,
        eventual: bool,
    ) -> Result<Self, GraphError> {
        let mut q = Query {
            raw: raw.clone(),
            ..Query::default()
        };
        q.count = param(&raw, "$count").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        q.eventual = eventual;
        let advanced = eventual && q.count;
        if let Some(sel) = param(&raw, "$select") {
            let mut names = Vec::new();
            for name in sel.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                // Navigation properties in $select (e.g. `members` on group delta) are handled by
                // the caller; anything else unknown is refused like Graph does (message INF).
                let canonical = resource
                    .properties()
                    .iter()
                    .find(|p| p.eq_ignore_ascii_case(name));
                match canonical {
                    Some(p) => names.push((*p).to_owned()),
                    None if name == "members" || name == "manager" => names.push(name.to_owned()),
                    None => {
                        return Err(GraphError::new(
                            axum::http::StatusCode::BAD_REQUEST,
                            "BadRequest",
                            format!(
                                "Could not find a property named '{name}' on type '{}'.",
                                resource.odata_type()
                            ),
                        ));
                    }
                }
            }
            q.select = Some(names);
        }
        if let Some(top) = param(&raw, "$top") {
            let n: i64 = top.trim().parse().map_err(|_| invalid_top(top))?;
            if !(1..=999).contains(&n) {
                return Err(invalid_top(top));
            }
            q.top = usize::try_from(n).ok();
        }
        if let Some(token) = param(&raw, "$skiptoken") {
            q.skip = Some(SkipToken::decode(token)?);
        }
        q.expand = param(&raw, "$expand").is_some();
        if let Some(search) = param(&raw, "$search") {
            if !eventual {
                return Err(GraphError::unsupported_query(
                    "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
                ));
            }
            q.search = parse_search(search);
        }
        if let Some(order) = param(&raw, "$orderby") {
            let mut parts = order.split_whitespace();
            let prop = parts.next().unwrap_or_default().to_owned();
            let desc = parts.next().is_some_and(|d| d.eq_ignore_ascii_case("desc"));
            let default_sortable = prop == "displayName" || prop == "userPrincipalName";
            if !default_sortable && !advanced {
                return Err(GraphError::unsupported_query(format!(
                    "Sorting not supported for '{prop}'."
                )));
            }
            q.order_by = Some((prop, desc));
        }
        if let Some(filter) = param(&raw, "$filter") {
            let expr = parse_filter(filter)?;
            validate(&expr, resource, eventual, q.count)?;
            if q.order_by.is_some() && !advanced {
                return Err(GraphError::unsupported_query(
                    "Sorting not supported for current query.",
                ));
            }
            q.filter = Some(expr);
        }
        Ok(q)
    }

    /// Whether `@odata.count` belongs on the first page: `$count=true` with
    /// `ConsistencyLevel: eventual` (§2.3, §2.4).
    #[must_use]
    pub fn wants_count(&self) -> bool {
        self.count && self.eventual && self.skip.is_none()
    }

    /// Whether an object matches `$filter` and `$search`.
    #[must_use]
    pub fn matches(&self, properties: &Map<String, Value>) -> bool {
        let filter_ok = self
            .filter
            .as_ref()
            .is_none_or(|f| eval(f, properties, None));
        let search_ok = self.search.iter().all(|(prop, text)| {
            properties
                .get(prop)
                .and_then(Value::as_str)
                .is_some_and(|v| v.to_lowercase().contains(&text.to_lowercase()))
        });
        filter_ok && search_ok
    }

    /// Sorts, pages and projects `items` (already filtered): returns the page and the
    /// skiptoken for the next page, if any.
    #[must_use]
    pub fn page<'a>(
        &self,
        mut items: Vec<&'a Map<String, Value>>,
        default_size: usize,
    ) -> (Vec<&'a Map<String, Value>>, Option<SkipToken>) {
        let key = |m: &Map<String, Value>| -> String {
            match &self.order_by {
                Some((prop, _)) => m
                    .get(prop)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_lowercase(),
                None => String::new(),
            }
        };
        let id = |m: &Map<String, Value>| -> String {
            m.get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let desc = self.order_by.as_ref().is_some_and(|(_, d)| *d);
        let cmp = |a: &(String, String), b: &(String, String)| -> Ordering {
            let o = a.cmp(b);
            if desc { o.reverse() } else { o }
        };
        items.sort_by(|a, b| cmp(&(key(a), id(a)), &(key(b), id(b))));
        if let Some(skip) = &self.skip {
            let last = (skip.k.clone(), skip.i.clone());
            items.retain(|m| cmp(&(key(m), id(m)), &last) == Ordering::Greater);
        }
        let size = self.top.unwrap_or(default_size);
        let next = if items.len() > size {
            items.truncate(size);
            items.last().map(|m| SkipToken {
                k: key(m),
                i: id(m),
            })
        } else {
            None
        };
        (items, next)
    }

    /// The nextLink for `path` (e.g. `/v1.0/users`): the original options plus the new token.
    #[must_use]
    pub fn next_link(&self, base: &str, path: &str, token: &SkipToken) -> String {
        let mut pairs: Vec<(String, String)> = self
            .raw
            .iter()
            .filter(|(k, _)| {
                !k.eq_ignore_ascii_case("$skiptoken") && !k.eq_ignore_ascii_case("$count")
            })
            .cloned()
            .collect();
        pairs.push(("$skiptoken".into(), token.encode()));
        format!("{base}{path}?{}", encode_query(&pairs))
    }
}

/// Encodes query pairs, keeping `$`, `,` `(`, `)` and `'` readable like Graph's links.
#[must_use]
pub fn encode_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'$'
            | b','
            | b'('
            | b')'
            | b'\''
            | b':'
            | b'/'
            | b'@' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn invalid_top(value: &str) -> GraphError {
    GraphError::unsupported_query(format!(
        "Invalid page size specified: '{value}'. Must be between 1 and 999 inclusive."
    ))
}

fn parse_search(search: &str) -> Vec<(String, String)> {
    // `"displayName:adele" AND "mail:contoso"`: each quoted clause is property:text.
    search
        .split('"')
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("and"))
        .filter_map(|clause| {
            clause
                .split_once(':')
                .map(|(p, t)| (p.trim().to_owned(), t.trim().to_owned()))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// $filter
// ---------------------------------------------------------------------------------------------

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `eq`
    Eq,
    /// `ne` (advanced)
    Ne,
    /// `ge`
    Ge,
    /// `le`
    Le,
    /// `gt`
    Gt,
    /// `lt`
    Lt,
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `'text'`
    Str(String),
    /// `true`/`false`
    Bool(bool),
    /// `null`
    Null,
    /// A number.
    Num(f64),
    /// An unquoted GUID (e.g. `skuId eq 45715bb8-...`).
    Guid(String),
}

/// A parsed `$filter` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `a and b`
    And(Box<Expr>, Box<Expr>),
    /// `a or b`
    Or(Box<Expr>, Box<Expr>),
    /// `not a` (advanced)
    Not(Box<Expr>),
    /// `prop op literal`
    Cmp(String, CmpOp, Literal),
    /// `prop in (l1, l2)`
    In(String, Vec<Literal>),
    /// `startswith(prop, 'x')` (`ends == false`) or `endswith(prop, 'x')`.
    Func {
        /// `endswith` rather than `startswith`.
        ends: bool,
        /// Property path.
        prop: String,
        /// The text.
        arg: String,
    },
    /// `prop/any(v: body)`
    Any {
        /// The collection property.
        prop: String,
        /// The lambda variable.
        var: String,
        /// The lambda body.
        body: Box<Expr>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    Comma,
    Colon,
}

fn invalid_filter(detail: &str) -> GraphError {
    // Message shape assumed (Graph reports parse errors of $filter as 400 BadRequest).
    GraphError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "BadRequest",
        format!("Invalid filter clause: {detail}"),
    )
}

fn tokenize(s: &str) -> Result<Vec<Tok>, GraphError> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            ':' => {
                out.push(Tok::Colon);
                i += 1;
            }
            '\'' => {
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(invalid_filter("unterminated string literal.")),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            text.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            text.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(text));
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !matches!(chars[i], ' ' | '\t' | '(' | ')' | ',' | ':' | '\'')
                {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

/// Parses a `$filter` expression.
///
/// # Errors
/// 400 `BadRequest` "Invalid filter clause: ..." on a syntax error.
pub fn parse_filter(s: &str) -> Result<Expr, GraphError> {
    let toks = tokenize(s)?;
    let mut p = Parser { toks, pos: 0 };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err(invalid_filter("syntax error at the end of the expression."));
    }
    Ok(e)
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn expect(&mut self, t: &Tok) -> Result<(), GraphError> {
        if self.next().as_ref() == Some(t) {
            Ok(())
        } else {
            Err(invalid_filter("syntax error."))
        }
    }

    fn or(&mut self) -> Result<Expr, GraphError> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, GraphError> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, GraphError> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, GraphError> {
        match self.next() {
            Some(Tok::Open) => {
                let e = self.or()?;
                self.expect(&Tok::Close)?;
                Ok(e)
            }
            Some(Tok::Word(w)) => {
                let lower = w.to_ascii_lowercase();
                if (lower == "startswith" || lower == "endswith") && self.peek() == Some(&Tok::Open)
                {
                    self.pos += 1;
                    let prop = match self.next() {
                        Some(Tok::Word(p)) => p,
                        _ => return Err(invalid_filter("property expected.")),
                    };
                    self.expect(&Tok::Comma)?;
                    let arg = match self.next() {
                        Some(Tok::Str(s)) => s,
                        _ => return Err(invalid_filter("string literal expected.")),
                    };
                    self.expect(&Tok::Close)?;
                    return Ok(Expr::Func {
                        ends: lower == "endswith",
                        prop,
                        arg,
                    });
                }
                // `prop/any(v: ...)`
                if let Some(prop) = w.strip_suffix("/any").or_else(|| w.strip_suffix("/ANY")) {
                    self.expect(&Tok::Open)?;
                    let var = match self.next() {
                        Some(Tok::Word(v)) => v,
                        _ => return Err(invalid_filter("lambda variable expected.")),
                    };
                    self.expect(&Tok::Colon)?;
                    let body = self.or()?;
                    self.expect(&Tok::Close)?;
                    return Ok(Expr::Any {
                        prop: prop.to_owned(),
                        var,
                        body: Box::new(body),
                    });
                }
                let op_word = match self.next() {
                    Some(Tok::Word(o)) => o.to_ascii_lowercase(),
                    _ => return Err(invalid_filter("operator expected.")),
                };
                if op_word == "in" {
                    self.expect(&Tok::Open)?;
                    let mut lits = Vec::new();
                    loop {
                        lits.push(self.literal()?);
                        match self.next() {
                            Some(Tok::Comma) => {}
                            Some(Tok::Close) => break,
                            _ => return Err(invalid_filter("syntax error in 'in' list.")),
                        }
                    }
                    return Ok(Expr::In(w, lits));
                }
                let op = match op_word.as_str() {
                    "eq" => CmpOp::Eq,
                    "ne" => CmpOp::Ne,
                    "ge" => CmpOp::Ge,
                    "le" => CmpOp::Le,
                    "gt" => CmpOp::Gt,
                    "lt" => CmpOp::Lt,
                    _ => return Err(invalid_filter(&format!("unknown operator '{op_word}'."))),
                };
                let lit = self.literal()?;
                Ok(Expr::Cmp(w, op, lit))
            }
            _ => Err(invalid_filter("syntax error.")),
        }
    }

    fn literal(&mut self) -> Result<Literal, GraphError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Literal::Str(s)),
            Some(Tok::Word(w)) => {
                let lower = w.to_ascii_lowercase();
                Ok(match lower.as_str() {
                    "true" => Literal::Bool(true),
                    "false" => Literal::Bool(false),
                    "null" => Literal::Null,
                    _ if uuid::Uuid::parse_str(&w).is_ok() => Literal::Guid(lower),
                    _ => match w.parse::<f64>() {
                        Ok(n) => Literal::Num(n),
                        // Unquoted timestamps (`createdDateTime ge 2024-01-01T00:00:00Z`).
                        Err(_) if chrono::DateTime::parse_from_rfc3339(&w).is_ok() => {
                            Literal::Str(w)
                        }
                        Err(_) => return Err(invalid_filter(&format!("unexpected '{w}'."))),
                    },
                })
            }
            _ => Err(invalid_filter("literal expected.")),
        }
    }
}

/// Which operators a property supports by default (`basic`) and only as an advanced query.
struct Support {
    basic: &'static [&'static str],
    advanced: &'static [&'static str],
}

const STRING_FULL: Support = Support {
    basic: &["eq", "in", "ge", "le", "startswith"],
    advanced: &["ne", "not"],
};
const STRING_ENDS: Support = Support {
    basic: &["eq", "in", "ge", "le", "startswith"],
    advanced: &["ne", "not", "endswith"],
};
const BOOL: Support = Support {
    basic: &["eq", "in"],
    advanced: &["ne", "not"],
};
const ORDERED: Support = Support {
    basic: &["eq", "in", "ge", "le"],
    advanced: &["ne", "not"],
};
const ID: Support = Support {
    basic: &["eq", "in"],
    advanced: &["ne", "not"],
};
const ANY_STR: Support = Support {
    basic: &["any"],
    advanced: &["not", "endswith"],
};
const ANY_LICENSE: Support = Support {
    basic: &["any"],
    advanced: &["not"],
};

fn support(resource: Resource, prop: &str) -> Option<Support> {
    let common = match prop {
        "id" => Some(ID),
        "displayName" | "mailNickname" | "preferredLanguage" => Some(STRING_FULL),
        "mail" => Some(STRING_ENDS),
        "createdDateTime" => Some(ORDERED),
        "proxyAddresses" => Some(ANY_STR),
        _ => None,
    };
    if common.is_some() {
        return common;
    }
    match (resource, prop) {
        (Resource::User, "userPrincipalName") => Some(STRING_ENDS),
        (
            Resource::User,
            "givenName" | "surname" | "jobTitle" | "department" | "employeeId" | "city" | "country"
            | "companyName" | "state" | "usageLocation" | "officeLocation" | "postalCode"
            | "employeeType" | "userType" | "creationType",
        ) => Some(STRING_FULL),
        (Resource::User, "accountEnabled") => Some(BOOL),
        (Resource::User, "onPremisesImmutableId" | "lastPasswordChangeDateTime") => Some(ORDERED),
        (Resource::User, "otherMails" | "imAddresses") => Some(ANY_STR),
        (Resource::User, "assignedLicenses") => Some(ANY_LICENSE),
        (Resource::Group, "description") => Some(STRING_FULL),
        (Resource::Group, "securityEnabled" | "mailEnabled" | "isAssignableToRole") => Some(BOOL),
        (Resource::Group, "groupTypes") => Some(ANY_STR),
        (Resource::Group, "assignedLicenses") => Some(ANY_LICENSE),
        _ => None,
    }
}

fn unsupported_clause(prop: &str, resource: Resource) -> GraphError {
    GraphError::unsupported_query(format!(
        "Unsupported or invalid query filter clause specified for property '{prop}' of resource '{}'.",
        resource.directory_name()
    ))
}

fn needs_eventual(op: &str, eventual: bool) -> GraphError {
    if eventual {
        // Header present but `$count=true` missing (message INF).
        GraphError::unsupported_query(format!(
            "Operator '{op}' is not supported because the required parameters might be missing. Try adding $count=true query parameter and ConsistencyLevel:eventual header. Refer to https://aka.ms/graph-docs/advanced-queries for more information"
        ))
    } else {
        GraphError::unsupported_query(format!(
            "Operator '{op}' is not supported because the 'ConsistencyLevel:eventual' header is missing. Refer to https://aka.ms/graph-docs/advanced-queries for more information"
        ))
    }
}

fn check_op(
    resource: Resource,
    prop: &str,
    op: &str,
    display: &str,
    eventual: bool,
    count: bool,
) -> Result<(), GraphError> {
    let s = support(resource, prop).ok_or_else(|| unsupported_clause(prop, resource))?;
    if s.basic.contains(&op) {
        return Ok(());
    }
    if s.advanced.contains(&op) {
        return if eventual && count {
            Ok(())
        } else {
            Err(needs_eventual(display, eventual))
        };
    }
    Err(unsupported_clause(prop, resource))
}

fn validate(e: &Expr, resource: Resource, eventual: bool, count: bool) -> Result<(), GraphError> {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            validate(a, resource, eventual, count)?;
            validate(b, resource, eventual, count)
        }
        Expr::Not(inner) => {
            if !(eventual && count) {
                return Err(needs_eventual("not", eventual));
            }
            validate(inner, resource, eventual, count)
        }
        Expr::Cmp(prop, op, lit) => {
            if *lit == Literal::Str(String::new()) {
                // `userPrincipalName eq ''` is refused like an unsupported clause (§2.4).
                return Err(unsupported_clause(prop, resource));
            }
            let (name, display) = match op {
                CmpOp::Eq => ("eq", "eq"),
                CmpOp::Ne => ("ne", "ne"),
                CmpOp::Ge | CmpOp::Gt => ("ge", "ge"),
                CmpOp::Le | CmpOp::Lt => ("le", "le"),
            };
            check_op(resource, prop, name, display, eventual, count)
        }
        Expr::In(prop, _) => check_op(resource, prop, "in", "in", eventual, count),
        Expr::Func { ends, prop, .. } => {
            if *ends {
                check_op(resource, prop, "endswith", "endsWith", eventual, count)
            } else {
                check_op(resource, prop, "startswith", "startsWith", eventual, count)
            }
        }
        Expr::Any { prop, .. } => check_op(resource, prop, "any", "any", eventual, count),
    }
}

fn lookup<'a>(
    properties: &'a Map<String, Value>,
    path: &str,
    lambda: Option<(&str, &'a Value)>,
) -> Option<&'a Value> {
    let mut segments = path.split('/');
    let first = segments.next()?;
    let mut current = match lambda {
        Some((var, value)) if var == first => Some(value),
        _ => properties.get(first),
    };
    for seg in segments {
        current = current.and_then(|v| v.get(seg));
    }
    current
}

fn lit_matches(value: Option<&Value>, op: CmpOp, lit: &Literal) -> bool {
    let ord = match (value, lit) {
        (None | Some(Value::Null), Literal::Null) => Some(Ordering::Equal),
        (None | Some(Value::Null), _) | (Some(_), Literal::Null) => None,
        (Some(Value::String(v)), Literal::Str(s) | Literal::Guid(s)) => {
            Some(v.to_lowercase().cmp(&s.to_lowercase()))
        }
        (Some(Value::Bool(v)), Literal::Bool(b)) => Some(v.cmp(b)),
        (Some(Value::Number(v)), Literal::Num(n)) => v.as_f64().and_then(|x| x.partial_cmp(n)),
        _ => None,
    };
    match op {
        CmpOp::Eq => ord == Some(Ordering::Equal),
        CmpOp::Ne => ord != Some(Ordering::Equal),
        CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Gt => ord == Some(Ordering::Greater),
        CmpOp::Lt => ord == Some(Ordering::Less),
    }
}

/// Evaluates a parsed filter against an object (no support-table validation).
#[must_use]
pub fn eval_filter(e: &Expr, properties: &Map<String, Value>) -> bool {
    eval(e, properties, None)
}

fn eval(e: &Expr, properties: &Map<String, Value>, lambda: Option<(&str, &Value)>) -> bool {
    match e {
        Expr::And(a, b) => eval(a, properties, lambda) && eval(b, properties, lambda),
        Expr::Or(a, b) => eval(a, properties, lambda) || eval(b, properties, lambda),
        Expr::Not(a) => !eval(a, properties, lambda),
        Expr::Cmp(prop, op, lit) => lit_matches(lookup(properties, prop, lambda), *op, lit),
        Expr::In(prop, lits) => {
            let v = lookup(properties, prop, lambda);
            lits.iter().any(|l| lit_matches(v, CmpOp::Eq, l))
        }
        Expr::Func { ends, prop, arg } => lookup(properties, prop, lambda)
            .and_then(Value::as_str)
            .is_some_and(|v| {
                let (v, a) = (v.to_lowercase(), arg.to_lowercase());
                if *ends {
                    v.ends_with(&a)
                } else {
                    v.starts_with(&a)
                }
            }),
        Expr::Any { prop, var, body } => properties
            .get(prop)
            .and_then(Value::as_array)
            .is_some_and(|items| {
                items
                    .iter()
                    .any(|item| eval(body, properties, Some((var, item))))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Map<String, Value> {
        json!({
            "id": "1", "userPrincipalName": "AdeleV@contoso.com", "displayName": "Adele Vance",
            "accountEnabled": true, "proxyAddresses": ["SMTP:adele@contoso.com"],
            "assignedLicenses": [{"skuId": "45715bb8-13f9-4bf6-927f-ef96c102d394", "disabledPlans": []}]
        })
        .as_object()
        .cloned()
        .unwrap_or_default()
    }

    fn q(filter: &str, eventual: bool, count: bool) -> Result<Query, GraphError> {
        let mut raw = vec![("$filter".to_owned(), filter.to_owned())];
        if count {
            raw.push(("$count".into(), "true".into()));
        }
        Query::parse(raw, Resource::User, eventual)
    }

    // graph-spec §3.3: the default-supported filter subset evaluates case-insensitively.
    #[test]
    fn supported_filters_match_as_graph_does() {
        let u = user();
        for f in [
            "userPrincipalName eq 'adelev@contoso.com'",
            "startswith(displayName,'adele')",
            "startsWith(displayName, 'Ad') and accountEnabled eq true",
            "id in ('1','2')",
            "proxyAddresses/any(p:p eq 'smtp:adele@contoso.com')",
            "assignedLicenses/any(x:x/skuId eq 45715bb8-13f9-4bf6-927f-ef96c102d394)",
            "mail eq null or displayName eq 'O''Neil'",
        ] {
            let query = q(f, false, false).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(query.matches(&u), "{f}");
        }
        let query = q("displayName eq 'Other'", false, false).unwrap_or_else(|e| panic!("{e}"));
        assert!(!query.matches(&u));
    }

    // graph-spec §2.4: endsWith/ne/not need ConsistencyLevel: eventual + $count=true.
    #[test]
    fn advanced_operators_need_consistency_level_eventual() {
        let err = q("endswith(userPrincipalName,'@contoso.com')", false, false)
            .err()
            .map(|e| e.message);
        assert_eq!(
            err.as_deref(),
            Some(
                "Operator 'endsWith' is not supported because the 'ConsistencyLevel:eventual' header is missing. Refer to https://aka.ms/graph-docs/advanced-queries for more information"
            )
        );
        assert!(q("endswith(userPrincipalName,'@contoso.com')", true, true).is_ok());
        assert!(q("accountEnabled ne true", false, false).is_err());
    }

    // graph-spec §2.4: an unsupported property or an empty literal is refused.
    #[test]
    fn unsupported_clauses_are_refused_with_the_directory_message() {
        let err = q("userPrincipalName eq ''", false, false)
            .err()
            .map(|e| (e.code, e.message));
        assert_eq!(
            err,
            Some((
                "Request_UnsupportedQuery",
                "Unsupported or invalid query filter clause specified for property 'userPrincipalName' of resource 'User'.".to_owned()
            ))
        );
        assert!(q("passwordPolicies eq 'x'", false, false).is_err());
    }

    // graph-spec §2.3: skiptokens round-trip and are opaque.
    #[test]
    fn skiptokens_round_trip() {
        let t = SkipToken {
            k: "a".into(),
            i: "b".into(),
        };
        let enc = t.encode();
        assert!(enc.starts_with(SKIPTOKEN_PREFIX));
        assert_eq!(SkipToken::decode(&enc).ok(), Some(t));
        assert!(SkipToken::decode("garbage").is_err());
    }
}
