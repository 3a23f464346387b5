//! Matching a file's headers to schema fields: exact names first, then names equal once
//! case, spaces, hyphens and underscores are ignored (or equal to the field's label or one
//! of its synonyms), then close spellings. Each header maps to at most one field.

use std::collections::{BTreeMap, HashMap};

/// `Birth Date`, `birth-date` and `BIRTH_DATE` all become `birthdate`.
pub fn normalize(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// Edit distance (insertions, deletions, substitutions), for close spellings.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Close enough to be a misspelling: one edit in names of 4-7 characters, two from 8 on.
fn close(a: &str, b: &str) -> bool {
    let (la, lb) = (a.chars().count(), b.chars().count());
    let allowed = match la.min(lb) {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    };
    // lengths further apart than the allowed edits cannot be close
    allowed > 0 && la.abs_diff(lb) <= allowed && edit_distance(a, b) <= allowed
}

/// A field to match: its name, label and synonyms.
pub struct Target<'a> {
    pub name: &'a str,
    pub label: &'a str,
    pub synonyms: &'a [String],
}

/// [`auto_map`] for a schema's fields.
pub fn auto_map_schema(schema: &crate::domain::entities::EntitySchema, headers: &[String]) -> BTreeMap<String, String> {
    let targets: Vec<Target> =
        schema.fields.iter().map(|f| Target { name: f.name(), label: &f.label, synonyms: &f.synonyms }).collect();
    auto_map(&targets, headers)
}

/// What identifies a set of headers whatever their order and spelling (`E-Mail` and
/// `email` alike): the org's last confirmed mapping for it is proposed again.
pub fn headers_key(headers: &[String]) -> String {
    use md5::{Digest, Md5};
    let mut names: Vec<String> = headers.iter().map(|h| normalize(h)).collect();
    names.sort();
    hex::encode(Md5::digest(names.join("\u{1f}").as_bytes()))
}

/// Proposes a mapping `field name → header` (seed 004's `column_mapping` shape).
pub fn auto_map(fields: &[Target<'_>], headers: &[String]) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    let mut used = vec![false; headers.len()];
    let normalized: Vec<String> = headers.iter().map(|h| normalize(h)).collect();
    let wanted: Vec<(String, String, Vec<String>)> = fields
        .iter()
        .map(|f| (normalize(f.name), normalize(f.label), f.synonyms.iter().map(|s| normalize(s)).collect()))
        .collect();
    // the columns of each exact and each normalized spelling, in file order: the first two
    // passes look a field up instead of reading every header
    let mut by_exact: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_normalized: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        by_exact.entry(h.trim()).or_default().push(i);
        by_normalized.entry(normalized[i].as_str()).or_default().push(i);
    }
    let first_unused = |lists: &[Option<&Vec<usize>>], used: &[bool]| {
        lists.iter().flatten().flat_map(|l| l.iter()).copied().filter(|&i| !used[i]).min()
    };
    for pass in 0..3 {
        for (f, (name, label, synonyms)) in fields.iter().zip(&wanted) {
            if map.contains_key(f.name) {
                continue;
            }
            let found = match pass {
                0 => first_unused(&[by_exact.get(f.name)], &used),
                1 => first_unused(&[by_normalized.get(name.as_str()), by_normalized.get(label.as_str())], &used)
                    .or_else(|| {
                        let lists: Vec<_> = synonyms.iter().map(|s| by_normalized.get(s.as_str())).collect();
                        first_unused(&lists, &used)
                    }),
                // close spellings: a scan, but only of headers of about the right length
                _ => (0..headers.len())
                    .find(|&i| !used[i] && (close(&normalized[i], name) || close(&normalized[i], label))),
            };
            if let Some(i) = found {
                used[i] = true;
                map.insert(f.name.to_string(), headers[i].clone());
            }
        }
    }
    map
}

/// Required fields the mapping leaves without a column, in the given order.
pub fn missing_required<'a>(
    required: impl IntoIterator<Item = &'a str>,
    mapping: &BTreeMap<String, String>,
) -> Vec<&'a str> {
    required.into_iter().filter(|f| !mapping.contains_key(*f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(name: &'a str, label: &'a str) -> Target<'a> {
        Target { name, label, synonyms: &[] }
    }

    fn h(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_then_loose_then_close() {
        let fields = [
            t("client_number", "Client number"),
            t("birth_date", "Birth date"),
            t("first_name", "First name"),
            t("email", "Email"),
        ];
        let m = auto_map(&fields, &h(&["client_number", "Birth Date", "Frist Name", "E-Mail", "Notes"]));
        assert_eq!(m.get("client_number").map(String::as_str), Some("client_number"));
        assert_eq!(m.get("birth_date").map(String::as_str), Some("Birth Date"));
        assert_eq!(m.get("first_name").map(String::as_str), Some("Frist Name"), "a transposition is close");
        assert_eq!(m.get("email").map(String::as_str), Some("E-Mail"));
        assert_eq!(m.len(), 4, "Notes stays unmapped");
    }

    #[test]
    fn labels_match_too_and_a_header_is_used_once() {
        let fields = [t("code", "Location code"), t("name", "Name")];
        let m = auto_map(&fields, &h(&["LOCATION CODE", "name", "Name"]));
        assert_eq!(m.get("code").map(String::as_str), Some("LOCATION CODE"));
        assert_eq!(m.get("name").map(String::as_str), Some("name"), "exact beats loose");
        let m = auto_map(&[t("name", "Name"), t("names", "Names")], &h(&["name"]));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn synonyms_match_after_names_and_labels() {
        let zip = ["Zip".to_string(), "Postcode".to_string()];
        let dob = ["DOB".to_string()];
        let fields = [
            Target { name: "postal_code", label: "Postal code", synonyms: &zip },
            Target { name: "birth_date", label: "Birth date", synonyms: &dob },
        ];
        let m = auto_map(&fields, &h(&["POST-CODE", "D.O.B."]));
        assert_eq!(m.get("postal_code").map(String::as_str), Some("POST-CODE"));
        assert_eq!(m.get("birth_date").map(String::as_str), Some("D.O.B."));
        let m = auto_map(&fields, &h(&["zip", "postal_code"]));
        assert_eq!(m.get("postal_code").map(String::as_str), Some("postal_code"), "the name beats a synonym");
    }

    #[test]
    fn the_same_headers_in_another_order_or_spelling_give_the_same_key() {
        assert_eq!(headers_key(&h(&["E-Mail", "Name"])), headers_key(&h(&["name", "email"])));
        assert_ne!(headers_key(&h(&["email", "name"])), headers_key(&h(&["email", "name", "phone"])));
    }

    #[test]
    fn short_names_need_exact_or_loose_matches() {
        let m = auto_map(&[t("kind", "Kind"), t("city", "City")], &h(&["kid", "cty"]));
        assert!(m.is_empty(), "{m:?}");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn missing_required_fields_are_listed() {
        let m = auto_map(&[t("code", "Code")], &h(&["code"]));
        assert_eq!(missing_required(["code", "name"], &m), vec!["name"]);
    }
}
