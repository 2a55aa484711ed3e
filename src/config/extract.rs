//! Extracting a config struct from a figment with every key problem listed at once.
//!
//! serde stops at the first error, and `deny_unknown_fields` at the first unknown key, so a file
//! with three typos would take three runs to fix. Here each failing key (unknown, or of the
//! wrong type) is recorded with its dotted path and where it came from, removed from the merged
//! value, and the extraction repeated until it succeeds or nothing more can be removed.

use figment::value::{Dict, Value};
use figment::{Figment, Metadata, Source};
use serde::de::DeserializeOwned;

/// More problems than any real file has; bounds the retries on hostile input.
const MAX_PROBLEMS: usize = 100;

/// `T` from `figment`, or every problem found, each once.
///
/// # Errors
/// One line per problem: `auth.max_skew: unknown key (in /etc/x.toml); expected one of …`.
pub(crate) fn extract_all<T: DeserializeOwned>(figment: &Figment) -> Result<T, Vec<String>> {
    match extract_lenient(figment)? {
        (t, problems) if problems.is_empty() => Ok(t),
        (_, problems) => Err(problems),
    }
}

/// `T` from what is left of `figment` once the failing keys are taken out, and those keys'
/// problems, so a check can go on to validate the rest.
///
/// # Errors
/// The problems, when the sources cannot be read or nothing extracts.
pub(super) fn extract_lenient<T: DeserializeOwned>(
    figment: &Figment,
) -> Result<(T, Vec<String>), Vec<String>> {
    // Reading the sources (TOML syntax, a missing file) fails as a whole: nothing to retry.
    let mut value: Value = figment.extract().map_err(|e| {
        e.into_iter()
            .map(|e| describe(figment, &e))
            .collect::<Vec<_>>()
    })?;
    let mut problems: Vec<String> = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let errors = match value.deserialize::<T>() {
            Ok(t) => return Ok((t, problems)),
            Err(errors) => errors,
        };
        let mut removed = false;
        for e in errors {
            let line = describe(figment, &e);
            if !problems.contains(&line) {
                problems.push(line);
            }
            removed |= remove(&mut value, &e.path);
        }
        if !removed {
            break;
        }
    }
    Err(problems)
}

/// `path: what is wrong (where it came from)`.
fn describe(figment: &Figment, e: &figment::Error) -> String {
    let key = e.path.join(".");
    let from = figment
        .find_metadata(&key)
        .or(e.metadata.as_ref())
        .map(origin)
        .unwrap_or_default();
    let at = if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    };
    match &e.kind {
        figment::error::Kind::UnknownField(_, []) => {
            format!("{at}unknown key{from}; this table takes no keys")
        }
        figment::error::Kind::UnknownField(_, expected) => {
            format!(
                "{at}unknown key{from}; expected one of {}",
                expected.join(", ")
            )
        }
        kind => format!("{at}{kind}{from}"),
    }
}

fn origin(md: &Metadata) -> String {
    match &md.source {
        Some(Source::File(path)) => format!(" (in {})", path.display()),
        Some(Source::Code(_)) | None if md.name.contains("environment") => {
            format!(" (from the {})", md.name.replace('`', ""))
        }
        _ => String::new(),
    }
}

/// Removes the value at `path` (dictionary keys, or array indexes); whether it was there.
fn remove(value: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut at = value;
    for key in parents {
        at = match at {
            Value::Dict(_, dict) => match dict.get_mut(key) {
                Some(v) => v,
                None => return false,
            },
            Value::Array(_, items) => {
                match key.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                    Some(v) => v,
                    None => return false,
                }
            }
            _ => return false,
        };
    }
    match at {
        Value::Dict(_, dict) => remove_key(dict, last),
        Value::Array(_, items) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

fn remove_key(dict: &mut Dict, key: &str) -> bool {
    dict.remove(key).is_some()
}

#[cfg(test)]
mod tests {
    use figment::providers::{Format, Serialized, Toml};
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Inner {
        port: u16,
        name: String,
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Outer {
        inner: Inner,
        items: Vec<Inner>,
        flag: bool,
    }

    fn figment(toml: &str) -> Figment {
        Figment::from(Serialized::defaults(Outer::default())).merge(Toml::string(toml))
    }

    #[test]
    fn every_unknown_and_mistyped_key_is_listed_once() {
        let problems = extract_all::<Outer>(&figment(
            "typo = 1\nflag = \"yes\"\n[inner]\nprot = 22\nname = 5\n[[items]]\nport = 1\nextra = 2\n",
        ))
        .unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:#?}");
        for expected in [
            "typo: unknown key; expected one of inner, items, flag",
            "inner.prot: unknown key; expected one of port, name",
            "items.0.extra: unknown key; expected one of port, name",
            "flag: invalid type: found string \"yes\", expected a boolean",
            "inner.name: invalid type: found signed int `5`, expected a string",
        ] {
            assert!(
                problems.iter().any(|p| p == expected),
                "missing {expected:?} in {problems:#?}"
            );
        }
    }

    #[test]
    fn a_good_config_extracts() {
        let outer = extract_all::<Outer>(&figment("flag = true\n[inner]\nport = 22\n")).unwrap();
        assert!(outer.flag);
        assert_eq!(outer.inner.port, 22);
    }

    #[test]
    fn a_syntax_error_is_one_problem() {
        let problems = extract_all::<Outer>(&figment("[inner\n")).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
    }
}
