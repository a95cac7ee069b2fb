//! The organisation and contact attributes a directory user carries to M365 (R-ATTR-1):
//! `employeeId`, `officeLocation`, `mobilePhone`, `businessPhones`, `companyName`,
//! `usageLocation`, `city`, `country` — one [`UserAttributes`] on the directory user, on the M365
//! account as read, and on the create payload; one [`AttributesPatch`] for what a PATCH changes
//! and what a users delta reports (`Some(None)`: `null`, i.e. cleared).
//!
//! Limits are Graph's (openapi/v1.0-property-notes.md, User): employeeId ≤ 16, companyName ≤ 64
//! (also microsoftgraph/microsoft-graph-docs#7979: longer is a 400), mobilePhone ≤ 64, city and
//! country ≤ 128; officeLocation ≤ 128 is **unconfirmed** (the notes give no limit; 128 is the
//! on-premises `physicalDeliveryOfficeName` range); each business phone ≤ 64 is **unconfirmed**
//! (the on-premises `telephoneNumber` range). `businessPhones` is a collection but "only one
//! number can be set for this property" (property notes), so more than one is refused.
//! `usageLocation` is "a two-letter country code (ISO standard 3166)" and "Not nullable"
//! (graph-spec §3.4): it must be an assigned ISO 3166-1 alpha-2 code ([`is_country_code`]), and
//! clearing it in the directory leaves M365's value alone (a licensed account needs one, R-LIC-1).

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{FieldProblem, InvalidInput};
use crate::policy::name::check_name;

/// Most numbers `businessPhones` holds in M365 (property notes: "only one number can be set").
pub const MAX_BUSINESS_PHONES: usize = 1;

/// Longest business phone number (unconfirmed, see the module docs).
pub const MAX_BUSINESS_PHONE_LEN: usize = 64;

/// The text attributes and their longest value in characters (see the module docs for sources);
/// `usageLocation` is checked as a country code instead.
const TEXT_LIMITS: [(&str, usize); 6] = [
    ("employeeId", 16),
    ("officeLocation", 128),
    ("mobilePhone", 64),
    ("companyName", 64),
    ("city", 128),
    ("country", 128),
];

/// The officially assigned ISO 3166-1 alpha-2 codes (249), the values `usageLocation` takes.
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET \
FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU \
ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ \
LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW \
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ \
UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// True for an assigned ISO 3166-1 alpha-2 code, upper case (`US`, `GB`; not `UK`, not `us`).
#[must_use]
pub fn is_country_code(code: &str) -> bool {
    code.len() == 2 && ISO_3166_ALPHA2.split(' ').any(|c| c == code)
}

/// The R-ATTR-1 attributes of a user. Absent (`None`, `[]`) is unset; records and payloads
/// written before these attributes existed load with all of them unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UserAttributes {
    /// `employeeId` (≤ 16).
    pub employee_id: Option<String>,
    /// `officeLocation` (≤ 128, unconfirmed).
    pub office_location: Option<String>,
    /// `mobilePhone` (≤ 64).
    pub mobile_phone: Option<String>,
    /// `businessPhones`: at most one number in M365.
    #[serde(deserialize_with = "list_or_null")]
    pub business_phones: Vec<String>,
    /// `companyName` (≤ 64).
    pub company_name: Option<String>,
    /// `usageLocation`: an ISO 3166-1 alpha-2 code.
    pub usage_location: Option<String>,
    /// `city` (≤ 128).
    pub city: Option<String>,
    /// `country` (≤ 128).
    pub country: Option<String>,
}

/// Changes to (or reported values of) the R-ATTR-1 attributes: `None` leaves an attribute as
/// it is (PATCH semantics, graph-spec §3.4) or was not reported by delta; `Some(None)` clears
/// it / was reported `null`; `businessPhones` cleared is `Some(vec![])`. Serializes as the
/// PATCH body fragment (`null` clears, `[]` empties the phones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributesPatch {
    /// `employeeId`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub employee_id: Option<Option<String>>,
    /// `officeLocation`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub office_location: Option<Option<String>>,
    /// `mobilePhone`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub mobile_phone: Option<Option<String>>,
    /// `businessPhones`.
    #[serde(
        default,
        deserialize_with = "present_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub business_phones: Option<Vec<String>>,
    /// `companyName`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub company_name: Option<Option<String>>,
    /// `usageLocation` (never `Some(None)` in a patch we send: Graph's is not nullable).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub usage_location: Option<Option<String>>,
    /// `city`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub city: Option<Option<String>>,
    /// `country`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub country: Option<Option<String>>,
}

/// A present property, `null` included (`Some(None)`); with `default` an absent one is `None`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A present collection; `null` reads as empty.
fn present_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    list_or_null(d).map(Some)
}

fn list_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Option::<Vec<String>>::deserialize(d).map(Option::unwrap_or_default)
}

/// The single-valued attributes of `$value` as `(Graph name, $access field)` pairs, in a fixed
/// order (`$access`: `&`, `&mut`, or nothing to move them out). One list for both types.
macro_rules! texts {
    ($value:expr, $($access:tt)*) => {
        [
            ("employeeId", $($access)* $value.employee_id),
            ("officeLocation", $($access)* $value.office_location),
            ("mobilePhone", $($access)* $value.mobile_phone),
            ("companyName", $($access)* $value.company_name),
            ("usageLocation", $($access)* $value.usage_location),
            ("city", $($access)* $value.city),
            ("country", $($access)* $value.country),
        ]
    };
}

impl UserAttributes {
    /// The single-valued attributes by their Graph (and API) name.
    fn texts(&self) -> [(&'static str, &Option<String>); 7] {
        texts!(self, &)
    }

    fn texts_mut(&mut self) -> [(&'static str, &mut Option<String>); 7] {
        texts!(self, &mut)
    }

    /// Trims every value and drops blank ones (a blank attribute is absent).
    #[must_use]
    pub fn normalized(mut self) -> Self {
        for (_, slot) in self.texts_mut() {
            *slot = slot
                .take()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty());
        }
        self.business_phones = self
            .business_phones
            .into_iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        self
    }

    /// Every rule broken, in the order of [`Self::texts`] then `businessPhones` (empty: valid):
    /// control or bidirectional-override characters, Graph's length limits, one business phone,
    /// a real ISO 3166-1 alpha-2 `usageLocation`.
    #[must_use]
    pub fn problems(&self) -> Vec<InvalidInput> {
        let mut problems = Vec::new();
        for (field, value) in self.texts() {
            let Some(value) = value else { continue };
            if let Err(e) = check_name(field, value) {
                problems.push(e);
            } else if field == "usageLocation" {
                if !is_country_code(value) {
                    problems.push(InvalidInput::Field {
                        field,
                        problem: FieldProblem::Invalid {
                            expected: "an ISO 3166-1 alpha-2 country code such as US",
                        },
                    });
                }
            } else if let Some((_, max)) = TEXT_LIMITS.iter().find(|(f, _)| *f == field)
                && value.chars().count() > *max
            {
                problems.push(InvalidInput::Field {
                    field,
                    problem: FieldProblem::TooLong { max: *max },
                });
            }
        }
        let field = "businessPhones";
        if self.business_phones.len() > MAX_BUSINESS_PHONES {
            problems.push(InvalidInput::Field {
                field,
                problem: FieldProblem::TooLong {
                    max: MAX_BUSINESS_PHONES,
                },
            });
        }
        for phone in &self.business_phones {
            if let Err(e) = check_name(field, phone) {
                problems.push(e);
            } else if phone.chars().count() > MAX_BUSINESS_PHONE_LEN {
                problems.push(InvalidInput::Field {
                    field,
                    problem: FieldProblem::TooLong {
                        max: MAX_BUSINESS_PHONE_LEN,
                    },
                });
            }
        }
        problems
    }

    /// The changes that make `have` (M365's values, or what was last sent) equal `self`, with the
    /// names of the attributes changed. A `usageLocation` unset here is left alone (not nullable
    /// in Graph, graph-spec §3.4).
    #[must_use]
    pub fn patch_from(&self, have: &Self) -> (AttributesPatch, Vec<&'static str>) {
        self.patch_where(|field| match field {
            Field::Text(name) => {
                let want = self.text(name);
                (want != have.text(name)).then_some(())
            }
            Field::Phones => (self.business_phones != have.business_phones).then_some(()),
        })
    }

    /// The changes that repair what a users delta reported (`reported`; absent = not reported)
    /// where it differs from `self`, with their names: a reported `null` is drift when `self`
    /// holds a value; a `usageLocation` unset here is never drift.
    #[must_use]
    pub fn repair(&self, reported: &AttributesPatch) -> (AttributesPatch, Vec<&'static str>) {
        self.patch_where(|field| match field {
            Field::Text(name) => {
                let have = reported.text(name)?;
                (self.text(name) != have.as_ref()).then_some(())
            }
            Field::Phones => {
                let have = reported.business_phones.as_ref()?;
                (&self.business_phones != have).then_some(())
            }
        })
    }

    /// Every attribute set to `self`'s value where `differs` says so (`Some(())`).
    fn patch_where(
        &self,
        differs: impl Fn(Field) -> Option<()>,
    ) -> (AttributesPatch, Vec<&'static str>) {
        let mut patch = AttributesPatch::default();
        let mut names = Vec::new();
        for (name, want) in self.texts() {
            if name == "usageLocation" && want.is_none() {
                continue;
            }
            if differs(Field::Text(name)).is_some()
                && let Some(slot) = named(patch.texts_mut(), name)
            {
                *slot = Some(want.clone());
                names.push(name);
            }
        }
        if differs(Field::Phones).is_some() {
            patch.business_phones = Some(self.business_phones.clone());
            names.push("businessPhones");
        }
        (patch, names)
    }

    fn text(&self, name: &str) -> Option<&String> {
        named(self.texts(), name).and_then(Option::as_ref)
    }
}

/// The value named `name` among `pairs`.
fn named<T>(pairs: [(&'static str, T); 7], name: &str) -> Option<T> {
    pairs.into_iter().find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// One attribute, for [`UserAttributes::patch_where`].
#[derive(Clone, Copy)]
enum Field {
    Text(&'static str),
    Phones,
}

impl AttributesPatch {
    /// True when nothing would change.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// A full patch: every attribute set to `attributes`' value, unset ones cleared (`null`,
    /// `[]`), except an unset `usageLocation` (not nullable, left alone).
    #[must_use]
    pub fn full(attributes: &UserAttributes) -> Self {
        attributes.patch_where(|_| Some(())).0
    }

    /// Every attribute as reported by a users delta that lists them all (`null`, `[]` for unset).
    #[must_use]
    pub fn every(attributes: &UserAttributes) -> Self {
        Self {
            usage_location: Some(attributes.usage_location.clone()),
            ..Self::full(attributes)
        }
    }

    /// The names of the attributes this patch sets or clears, in a fixed order.
    #[must_use]
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .texts()
            .into_iter()
            .filter(|(_, v)| v.is_some())
            .map(|(n, _)| n)
            .collect();
        if self.business_phones.is_some() {
            names.push("businessPhones");
        }
        names
    }

    /// Folds a later report in: what `later` reports wins, a reported `null` included.
    pub fn merge(&mut self, later: Self) {
        let phones = later.business_phones.clone();
        for ((_, slot), (_, value)) in self.texts_mut().into_iter().zip(texts!(later,)) {
            if value.is_some() {
                *slot = value;
            }
        }
        if phones.is_some() {
            self.business_phones = phones;
        }
    }

    /// Applies the changes to `attributes` (what M365 holds after this PATCH).
    pub fn apply(&self, attributes: &mut UserAttributes) {
        for ((_, slot), (_, value)) in attributes.texts_mut().into_iter().zip(self.texts()) {
            if let Some(value) = value {
                slot.clone_from(value);
            }
        }
        if let Some(phones) = &self.business_phones {
            attributes.business_phones.clone_from(phones);
        }
    }

    fn texts(&self) -> [(&'static str, &Option<Option<String>>); 7] {
        texts!(self, &)
    }

    fn texts_mut(&mut self) -> [(&'static str, &mut Option<Option<String>>); 7] {
        texts!(self, &mut)
    }

    fn text(&self, name: &str) -> Option<&Option<String>> {
        named(self.texts(), name).and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn full() -> UserAttributes {
        crate::testing::contract::every_attribute()
    }

    #[test]
    fn attributes_at_graphs_limits_are_valid() {
        // R-ATTR-1
        let at_limit = UserAttributes {
            employee_id: Some("e".repeat(16)),
            office_location: Some("o".repeat(128)),
            mobile_phone: Some("m".repeat(64)),
            business_phones: vec!["b".repeat(64)],
            company_name: Some("c".repeat(64)),
            usage_location: Some("GB".into()),
            city: Some("é".repeat(128)),
            country: Some("k".repeat(128)),
        };
        assert_eq!(at_limit.problems(), Vec::new());
        assert_eq!(UserAttributes::default().problems(), Vec::new());
    }

    type Breaker = fn(&mut UserAttributes);

    #[test]
    fn each_attribute_breaking_a_graph_rule_is_refused_by_name() {
        // R-ATTR-1
        let too_long = |max| FieldProblem::TooLong { max };
        let country = FieldProblem::Invalid {
            expected: "an ISO 3166-1 alpha-2 country code such as US",
        };
        let cases: [(&str, Breaker, FieldProblem); 11] = [
            (
                "employeeId",
                |a| a.employee_id = Some("e".repeat(17)),
                too_long(16),
            ),
            (
                "officeLocation",
                |a| a.office_location = Some("o".repeat(129)),
                too_long(128),
            ),
            (
                "mobilePhone",
                |a| a.mobile_phone = Some("m".repeat(65)),
                too_long(64),
            ),
            (
                "businessPhones",
                |a| a.business_phones = vec!["1".into(), "2".into()],
                too_long(1),
            ),
            (
                "businessPhones",
                |a| a.business_phones = vec!["b".repeat(65)],
                too_long(64),
            ),
            (
                "companyName",
                |a| a.company_name = Some("c".repeat(65)),
                too_long(64),
            ),
            (
                "usageLocation",
                |a| a.usage_location = Some("UK".into()),
                country.clone(),
            ),
            (
                "usageLocation",
                |a| a.usage_location = Some("us".into()),
                country.clone(),
            ),
            (
                "usageLocation",
                |a| a.usage_location = Some("USA".into()),
                country.clone(),
            ),
            ("city", |a| a.city = Some("c".repeat(129)), too_long(128)),
            (
                "country",
                |a| a.country = Some("k".repeat(129)),
                too_long(128),
            ),
        ];
        for (field, break_it, problem) in cases {
            let mut a = full();
            break_it(&mut a);
            assert_eq!(
                a.problems(),
                vec![InvalidInput::Field { field, problem }],
                "{field}"
            );
        }
    }

    #[test]
    fn every_bad_attribute_is_listed_not_only_the_first() {
        // R-ATTR-1
        let mut a = full();
        a.employee_id = Some("e".repeat(17));
        a.city = Some("Red\u{202E}mond".into());
        a.usage_location = Some("ZZ".into());
        let fields: Vec<&str> = a
            .problems()
            .iter()
            .map(|p| match p {
                InvalidInput::Field { field, .. } | InvalidInput::Name { field, .. } => *field,
                _ => "other",
            })
            .collect();
        assert_eq!(fields, vec!["employeeId", "usageLocation", "city"]);
    }

    #[test]
    fn only_assigned_upper_case_iso_codes_are_country_codes() {
        // R-ATTR-1
        assert_eq!(ISO_3166_ALPHA2.split(' ').count(), 249);
        for code in ["US", "GB", "JP", "DE", "ZW", "AX"] {
            assert!(is_country_code(code), "{code}");
        }
        for code in ["UK", "EU", "ZZ", "us", "U", "", "U S"] {
            assert!(!is_country_code(code), "{code}");
        }
    }

    #[test]
    fn blank_attributes_are_absent_and_values_are_trimmed() {
        // R-ATTR-1
        let a = UserAttributes {
            employee_id: Some("  ".into()),
            city: Some(" Redmond ".into()),
            business_phones: vec![" ".into(), " +1 1 ".into()],
            ..UserAttributes::default()
        }
        .normalized();
        assert_eq!(a.employee_id, None);
        assert_eq!(a.city.as_deref(), Some("Redmond"));
        assert_eq!(a.business_phones, vec!["+1 1".to_owned()]);
    }

    #[test]
    fn a_patch_carries_only_what_differs_and_clears_with_null_and_empty_list() {
        // R-ATTR-1, R-BIND-7
        let have = full();
        let mut want = full();
        want.city = Some("Seattle".into());
        want.mobile_phone = None;
        want.business_phones = Vec::new();
        want.usage_location = None;
        let (patch, names) = want.patch_from(&have);
        assert_eq!(names, vec!["mobilePhone", "city", "businessPhones"]);
        assert_eq!(patch.names(), names);
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!({"mobilePhone": null, "city": "Seattle", "businessPhones": []})
        );
        let mut applied = have.clone();
        patch.apply(&mut applied);
        want.usage_location = have.usage_location.clone();
        assert_eq!(applied, want, "M365 keeps its usage location");
        assert!(full().patch_from(&full()).0.is_empty());
    }

    #[test]
    fn a_full_patch_sets_every_attribute_and_clears_the_unset_ones_but_usage_location() {
        // R-ATTR-1
        let a = UserAttributes {
            city: Some("Oslo".into()),
            ..UserAttributes::default()
        };
        assert_eq!(
            serde_json::to_value(AttributesPatch::full(&a)).unwrap(),
            json!({"employeeId": null, "officeLocation": null, "mobilePhone": null,
                   "companyName": null, "city": "Oslo", "country": null, "businessPhones": []})
        );
    }

    #[test]
    fn a_repair_covers_reported_drift_only_and_a_reported_null_is_drift() {
        // R-ATTR-1, R-REC-1
        let user = full();
        let reported: AttributesPatch = serde_json::from_value(json!({
            "city": "Paris", "companyName": null, "employeeId": "E-1001",
            "businessPhones": [], "usageLocation": "FR"
        }))
        .unwrap();
        let (patch, names) = user.repair(&reported);
        assert_eq!(
            names,
            vec!["companyName", "usageLocation", "city", "businessPhones"]
        );
        assert_eq!(patch.city, Some(Some("Redmond".to_owned())));
        let unset = UserAttributes::default();
        let (_, names) = unset.repair(&reported);
        assert_eq!(
            names,
            vec!["employeeId", "city",],
            "an unset usage location is never drift; cleared ones match"
        );
    }

    #[test]
    fn a_later_report_wins_and_records_without_the_attributes_still_load() {
        // R-ATTR-1
        let mut first: AttributesPatch =
            serde_json::from_value(json!({"city": "Paris", "country": "FR"})).unwrap();
        let later: AttributesPatch = serde_json::from_value(json!({"city": null})).unwrap();
        first.merge(later);
        assert_eq!(first.city, Some(None));
        assert_eq!(first.country, Some(Some("FR".to_owned())));
        let old: UserAttributes = serde_json::from_value(json!({})).unwrap();
        assert_eq!(old, UserAttributes::default());
        let graph: UserAttributes =
            serde_json::from_value(json!({"businessPhones": null, "city": null})).unwrap();
        assert_eq!(graph, UserAttributes::default());
    }
}
