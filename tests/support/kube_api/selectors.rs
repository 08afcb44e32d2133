//! Label and field selectors as the API server reads them from `labelSelector` and `fieldSelector`,
//! so a client's narrowed list or watch sees exactly the objects a real cluster would give it.

use serde_json::Value;

use super::status::ApiError;

/// Both selectors of one request; an absent selector selects everything.
#[derive(Debug, Default)]
pub(super) struct Selection {
    labels: Vec<LabelRequirement>,
    fields: Vec<FieldRequirement>,
}

#[derive(Debug)]
enum LabelRequirement {
    In { key: String, values: Vec<String> },
    NotIn { key: String, values: Vec<String> },
    Exists(String),
    DoesNotExist(String),
}

#[derive(Debug)]
struct FieldRequirement {
    path: Vec<String>,
    value: String,
    equal: bool,
}

impl Selection {
    pub fn parse(label_selector: Option<&str>, field_selector: Option<&str>) -> Result<Self, ApiError> {
        Ok(Self {
            labels: split_terms(label_selector.unwrap_or("")).map(parse_label_term).collect::<Result<_, _>>()?,
            fields: split_terms(field_selector.unwrap_or("")).map(parse_field_term).collect::<Result<_, _>>()?,
        })
    }

    /// Whether `object` (as the client sees it) is selected.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        let labels_match = self.labels.iter().all(|requirement| match requirement {
            LabelRequirement::In { key, values } => label(key).is_some_and(|v| values.iter().any(|w| w == v)),
            LabelRequirement::NotIn { key, values } => label(key).is_none_or(|v| values.iter().all(|w| w != v)),
            LabelRequirement::Exists(key) => label(key).is_some(),
            LabelRequirement::DoesNotExist(key) => label(key).is_none(),
        });
        labels_match
            && self
                .fields
                .iter()
                .all(|requirement| (field_text(object, &requirement.path) == requirement.value) == requirement.equal)
    }
}

/// Splits on commas outside parentheses, so `env in (a,b),tier=web` is two terms.
fn split_terms(selector: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0usize;
    let mut start = 0;
    let mut terms = Vec::new();
    for (index, character) in selector.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&selector[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms.into_iter().map(str::trim).filter(|term| !term.is_empty())
}

fn parse_label_term(term: &str) -> Result<LabelRequirement, ApiError> {
    let invalid = || ApiError::bad_request(format!("unable to parse requirement: {term:?}"));
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelRequirement::DoesNotExist(key.trim().to_string()));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(LabelRequirement::NotIn { key: key.trim().to_string(), values: vec![value.trim().to_string()] });
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(LabelRequirement::In { key: key.trim().to_string(), values: vec![value.trim().to_string()] });
    }
    let mut words = term.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default().to_string();
    let Some(rest) = words.next().map(str::trim) else {
        return Ok(LabelRequirement::Exists(key));
    };
    let (operator, list) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let values = list
        .trim()
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(invalid)?
        .split(',')
        .map(|v| v.trim().to_string())
        .collect();
    match operator {
        "in" => Ok(LabelRequirement::In { key, values }),
        "notin" => Ok(LabelRequirement::NotIn { key, values }),
        _ => Err(invalid()),
    }
}

fn parse_field_term(term: &str) -> Result<FieldRequirement, ApiError> {
    let (path, value, equal) = if let Some((path, value)) = term.split_once("!=") {
        (path, value, false)
    } else if let Some((path, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        (path, value, true)
    } else {
        return Err(ApiError::bad_request(format!("invalid selector: {term:?}; can't understand it")));
    };
    Ok(FieldRequirement {
        path: path.trim().split('.').map(str::to_string).collect(),
        value: value.trim().to_string(),
        equal,
    })
}

/// A field's value as a field selector compares it: missing fields read as the empty string.
fn field_text(object: &Value, path: &[String]) -> String {
    let found = path.iter().try_fold(object, |value, key| value.get(key));
    match found {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}
