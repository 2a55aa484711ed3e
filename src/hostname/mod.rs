//! Workload host names: `<workload>[.<remote>].<suffix>`, e.g. `training-job-abc1234-0.ssh.baseten.co`.
//!
//! Pure: no I/O. The suffix, the workload kinds and the remote names are config data. A kind is
//! a name plus a template, literal text with fields:
//! - `{name}` an id (`[a-z0-9]+`), `{name:num}` a number of 1 to [`MAX_NUM_DIGITS`] (9)
//!   decimal digits (a node or replica index), `{name:slug}` `[a-z0-9]` runs
//!   joined by single dashes;
//! - at most one optional group `[...]` (no nesting), tried present first, then absent;
//! - a literal prefix first, which is how the kind is recognised.
//!
//! Matching backtracks (a slug tries its longest extent first) and is memoised, so it stays
//! linear-ish in the label length whatever the template. Input comes from the network (SNI,
//! SSH user name): error messages quote it truncated and escaped.

mod error;
mod formats;
mod template;
#[cfg(test)]
mod tests;

pub use error::{ExpandError, GrammarError, HostError};
pub use formats::{
    DEFAULT_REMOTE, DEFAULT_SUFFIX, MAX_LABEL, MAX_NAME, MAX_NUM_DIGITS, MODEL_KIND, MODEL_PREFIX,
    MODEL_TEMPLATE, TRAINING_JOB_KIND, TRAINING_JOB_PREFIX, TRAINING_JOB_TEMPLATE, default_kinds,
    fits_dns, full_host, is_dns_label, model_label, training_job_label,
};

use error::{show, show_char};
use serde::{Deserialize, Serialize};
use template::Kind;

/// Placeholders [`Target::expand`] provides besides the template's fields.
pub const BUILTIN_PLACEHOLDERS: [&str; 4] = ["kind", "remote", "host", "workload"];

/// One workload kind as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindSpec {
    pub name: String,
    pub template: String,
}

/// A parsed workload host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Canonical full host name: lowercase, no trailing dot, with suffix.
    pub host: String,
    pub kind: String,
    /// `None` = the default remote.
    pub remote: Option<String>,
    /// Field values in template order (absent optional fields are not listed).
    pub fields: Vec<(String, String)>,
}

impl Target {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// [`DEFAULT_REMOTE`] when `remote` is `None`.
    pub(crate) fn remote_name(&self) -> &str {
        self.remote.as_deref().unwrap_or(DEFAULT_REMOTE)
    }

    /// The workload label (first label of `host`).
    pub(crate) fn workload(&self) -> &str {
        self.host.split('.').next().unwrap_or_default()
    }

    fn value(&self, name: &str) -> Option<&str> {
        match name {
            "kind" => Some(&self.kind),
            "remote" => Some(self.remote_name()),
            "host" => Some(&self.host),
            "workload" => Some(self.workload()),
            _ => self.field(name),
        }
    }

    /// Substitutes `{field}`, `{kind}`, `{remote}`, `{host}` and `{workload}` in `template`.
    pub(crate) fn expand(&self, template: &str) -> Result<String, ExpandError> {
        let mut out = String::with_capacity(template.len() + 32);
        for (text, name) in pieces(template)? {
            out.push_str(text);
            let Some(name) = name else { continue };
            let Some(value) = self.value(name) else {
                let names = self
                    .fields
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .chain(BUILTIN_PLACEHOLDERS);
                return Err(ExpandError::UnknownPlaceholder {
                    template: template.to_string(),
                    name: name.to_string(),
                    available: names
                        .map(|n| format!("{{{n}}}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            out.push_str(value);
        }
        Ok(out)
    }
}

/// The placeholder names used by `template`, in order.
pub(crate) fn placeholders(template: &str) -> Result<Vec<&str>, ExpandError> {
    Ok(pieces(template)?
        .into_iter()
        .filter_map(|(_, name)| name)
        .collect())
}

/// Splits a placeholder template into (text, following placeholder) pieces.
fn pieces(template: &str) -> Result<Vec<(&str, Option<&str>)>, ExpandError> {
    let owned = || template.to_string();
    let mut out = Vec::new();
    let mut rest = template;
    while let Some((text, after)) = rest.split_once('{') {
        let Some((name, tail)) = after.split_once('}') else {
            return Err(ExpandError::Unclosed { template: owned() });
        };
        if text.contains('}') {
            return Err(ExpandError::StrayClose { template: owned() });
        }
        if name.contains('{') {
            return Err(ExpandError::Unclosed { template: owned() });
        }
        out.push((text, Some(name)));
        rest = tail;
    }
    if rest.contains('}') {
        return Err(ExpandError::StrayClose { template: owned() });
    }
    out.push((rest, None));
    Ok(out)
}

/// A DNS syntax problem, before it is tied to an input.
enum Dns {
    Empty,
    TooLong(usize),
    EmptyLabel,
    LabelTooLong(String, usize),
    BadChar(String, char),
    Hyphen(String),
}

/// DNS rules for an already lower-cased name without trailing dot.
fn check_dns(name: &str) -> Result<(), Dns> {
    if name.is_empty() {
        return Err(Dns::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(Dns::TooLong(name.len()));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(Dns::EmptyLabel);
        }
        if label.len() > MAX_LABEL {
            return Err(Dns::LabelTooLong(show(label), label.len()));
        }
        if let Some(ch) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(Dns::BadChar(show(label), ch));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(Dns::Hyphen(show(label)));
        }
    }
    Ok(())
}

impl Dns {
    fn describe(&self) -> String {
        match self {
            Dns::Empty => "empty".into(),
            Dns::TooLong(len) => format!("{len} bytes, over the {MAX_NAME}-byte limit"),
            Dns::EmptyLabel => "empty label".into(),
            Dns::LabelTooLong(label, len) => {
                format!("label \"{label}\" is {len} bytes, over {MAX_LABEL}")
            }
            Dns::BadChar(label, ch) => format!(
                "bad character {} in \"{label}\"; use lowercase a-z, 0-9 and '-'",
                show_char(*ch)
            ),
            Dns::Hyphen(label) => format!("label \"{label}\" starts or ends with '-'"),
        }
    }

    fn into_host_error(self, input: String, form: &str) -> HostError {
        let form = form.to_string();
        match self {
            Dns::Empty => HostError::Empty { input, form },
            Dns::TooLong(len) => HostError::TooLong { input, len },
            Dns::EmptyLabel => HostError::EmptyLabel { input, form },
            Dns::LabelTooLong(label, len) => HostError::LabelTooLong { input, label, len },
            Dns::BadChar(label, ch) => HostError::BadCharacter { input, label, ch },
            Dns::Hyphen(label) => HostError::HyphenAtEdge { input, label },
        }
    }
}

/// Compiled grammar built once from config.
#[derive(Debug, Clone)]
pub struct HostGrammar {
    /// Lowercase, no trailing dot.
    suffix: String,
    kinds: Vec<Kind>,
    /// Sorted, deduplicated.
    remotes: Vec<String>,
    expected: String,
}

impl HostGrammar {
    /// `remotes` = names of the non-default remotes (tenants) that may appear as the `<remote>`
    /// label. Returns every problem at once.
    pub(crate) fn new(
        suffix: &str,
        kinds: &[KindSpec],
        remotes: &[String],
    ) -> Result<Self, Vec<GrammarError>> {
        let mut errors = Vec::new();
        let norm = suffix
            .strip_suffix('.')
            .unwrap_or(suffix)
            .to_ascii_lowercase();
        let bad_suffix = |reason: String| GrammarError::BadSuffix {
            suffix: suffix.to_string(),
            reason,
        };
        match check_dns(&norm) {
            Err(p) => errors.push(bad_suffix(p.describe())),
            Ok(()) if norm.len() > MAX_NAME - 2 => errors.push(bad_suffix(
                "too long to leave room for a workload label".into(),
            )),
            Ok(()) => {}
        }
        if kinds.is_empty() {
            errors.push(GrammarError::NoKinds);
        }
        let mut compiled: Vec<Kind> = Vec::new();
        for (i, spec) in kinds.iter().enumerate() {
            let name_ok = spec
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if spec.name.is_empty() || !name_ok {
                errors.push(GrammarError::BadKindName {
                    name: spec.name.clone(),
                });
            }
            if kinds.iter().take(i).filter(|k| k.name == spec.name).count() == 1 {
                errors.push(GrammarError::DuplicateKind {
                    name: spec.name.clone(),
                });
            }
            match Kind::compile(spec) {
                Ok(kind) => compiled.push(kind),
                Err(reason) => errors.push(GrammarError::BadTemplate {
                    kind: spec.name.clone(),
                    template: spec.template.clone(),
                    reason,
                }),
            }
        }
        for name in remotes {
            let reason = if name.contains('.') {
                Some("must be a single label".to_string())
            } else {
                check_dns(name).err().map(|p| {
                    format!(
                        "{}; remote names must be lowercase host labels",
                        p.describe()
                    )
                })
            };
            if let Some(reason) = reason {
                errors.push(GrammarError::BadRemote {
                    name: name.clone(),
                    reason,
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut remotes = remotes.to_vec();
        remotes.sort();
        remotes.dedup();
        let patterns: Vec<&str> = compiled.iter().map(|k| k.pattern.as_str()).collect();
        let expected = match patterns.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => patterns.concat(),
        };
        Ok(HostGrammar {
            suffix: norm,
            kinds: compiled,
            remotes,
            expected,
        })
    }

    #[cfg(test)]
    pub(crate) fn suffix(&self) -> &str {
        &self.suffix
    }

    /// Human patterns of all kinds, e.g. `training-job-<job_id>-<node> or model-<model_id>-...`.
    pub(crate) fn expected(&self) -> String {
        self.expected.clone()
    }

    /// Field names of `kind` in template order (optional ones included), if the kind exists.
    #[cfg(test)]
    pub(crate) fn kind_fields(&self, kind: &str) -> Option<Vec<&str>> {
        let kind = self.kinds.iter().find(|k| k.name == kind)?;
        Some(kind.fields.iter().map(String::as_str).collect())
    }

    /// A full host name (SNI, token claim): must end with the suffix.
    pub fn parse_host(&self, host: &str) -> Result<Target, HostError> {
        let form = format!("<workload>[.<remote>].{}", self.suffix);
        let (input, name) = normalize(host, &form)?;
        match self.before_suffix(&name) {
            Some(rest) => self.resolve(input, rest, &form),
            None => Err(HostError::WrongSuffix {
                input,
                suffix: self.suffix.clone(),
            }),
        }
    }

    /// The SSH user name on the plain-SSH front: a full host name, or `<workload>` /
    /// `<workload>.<remote>` without the suffix.
    pub(crate) fn parse_user_target(&self, user: &str) -> Result<Target, HostError> {
        let form = format!(
            "<workload>[.<remote>] or <workload>[.<remote>].{}",
            self.suffix
        );
        let (input, name) = normalize(user, &form)?;
        let rest = self.before_suffix(&name).unwrap_or(&name);
        self.resolve(input, rest, &form)
    }

    /// The labels before `.suffix` ("" if `name` is the suffix itself), or `None`.
    fn before_suffix<'n>(&self, name: &'n str) -> Option<&'n str> {
        if name == self.suffix {
            return Some("");
        }
        name.strip_suffix(self.suffix.as_str())?.strip_suffix('.')
    }

    /// `rest` = the DNS-valid labels before the suffix.
    fn resolve(&self, input: String, rest: &str, form: &str) -> Result<Target, HostError> {
        if rest.is_empty() {
            return Err(HostError::MissingWorkload {
                input,
                form: form.to_string(),
            });
        }
        let (workload, remote) = match rest.split_once('.') {
            None => (rest, None),
            Some((w, r)) if !r.contains('.') => (w, Some(r)),
            Some(_) => {
                let labels = rest.split('.').count();
                return Err(HostError::TooManyLabels {
                    input,
                    labels,
                    form: form.to_string(),
                });
            }
        };
        let mut best: Option<&Kind> = None;
        let mut found = None;
        for kind in self
            .kinds
            .iter()
            .filter(|k| workload.starts_with(&k.prefix))
        {
            if let Some(fields) = kind.matches(workload) {
                found = Some((kind, fields));
                break;
            }
            if best.is_none_or(|b| kind.prefix.len() > b.prefix.len()) {
                best = Some(kind);
            }
        }
        let Some((kind, fields)) = found else {
            let oversized = best.and_then(|k| Some((k, k.oversized_number(workload)?)));
            return Err(match best {
                Some(k) if let Some((_, (field, value))) = oversized => HostError::NumberTooLong {
                    input,
                    field: field.to_string(),
                    digits: value.len(),
                    pattern: k.pattern.clone(),
                },
                Some(k) => HostError::Malformed {
                    input,
                    kind: k.name.clone(),
                    pattern: k.pattern.clone(),
                },
                None => HostError::UnknownKind {
                    input,
                    workload: workload.to_string(),
                    expected: self.expected(),
                },
            });
        };
        if let Some(remote) = remote
            && self
                .remotes
                .binary_search_by(|r| r.as_str().cmp(remote))
                .is_err()
        {
            return Err(HostError::UnknownRemote {
                input,
                remote: remote.to_string(),
                known: self.remotes.clone(),
            });
        }
        let host = match remote {
            Some(remote) => format!("{workload}.{remote}.{}", self.suffix),
            None => format!("{workload}.{}", self.suffix),
        };
        if host.len() > MAX_NAME {
            return Err(HostError::TooLong {
                input,
                len: host.len(),
            });
        }
        Ok(Target {
            host,
            kind: kind.name.clone(),
            remote: remote.map(str::to_string),
            fields,
        })
    }
}

/// Shown input plus the lower-cased name without trailing dot, DNS rules checked.
fn normalize(raw: &str, form: &str) -> Result<(String, String), HostError> {
    let input = show(raw);
    let trimmed = raw.strip_suffix('.').unwrap_or(raw);
    if trimmed.len() > MAX_NAME {
        return Err(HostError::TooLong {
            input,
            len: trimmed.len(),
        });
    }
    let name = trimmed.to_ascii_lowercase();
    match check_dns(&name) {
        Ok(()) => Ok((input, name)),
        Err(p) => Err(p.into_host_error(input, form)),
    }
}
