//! Workload host names: `<workload>[.<remote>].<suffix>`, e.g. `training-job-abc1234-0.ssh.baseten.co`.
//!
//! Pure: no I/O. The suffix, the workload kinds and the remote names are config data. A kind is
//! a name plus a template, literal text with fields:
//! - `{name}` an id (`[a-z0-9]+`), `{name:num}` decimal digits, `{name:slug}` `[a-z0-9]` runs
//!   joined by single dashes;
//! - at most one optional group `[...]` (no nesting), tried present first, then absent;
//! - a literal prefix first, which is how the kind is recognised.
//!
//! Matching backtracks (a slug tries its longest extent first) and is memoised, so it stays
//! linear-ish in the label length whatever the template. Input comes from the network (SNI,
//! SSH user name): error messages quote it truncated and escaped.

use serde::{Deserialize, Serialize};

const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;
const MAX_SHOWN: usize = 100;
/// What [`Target::remote_name`] says for host names without a remote label.
pub const DEFAULT_REMOTE: &str = "default";
/// Placeholders [`Target::expand`] provides besides the template's fields.
pub const BUILTIN_PLACEHOLDERS: [&str; 4] = ["kind", "remote", "host", "workload"];

/// One workload kind as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindSpec {
    pub name: String,
    pub template: String,
}

/// A configuration problem found by [`HostGrammar::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    #[error("bad suffix {suffix:?}: {reason}")]
    BadSuffix { suffix: String, reason: String },
    #[error("no workload kinds configured")]
    NoKinds,
    #[error("bad kind name {name:?}: use a-z, 0-9, '-' and '_'")]
    BadKindName { name: String },
    #[error("kind {name:?} is defined more than once")]
    DuplicateKind { name: String },
    #[error("kind {kind:?}: bad template {template:?}: {reason}")]
    BadTemplate {
        kind: String,
        template: String,
        reason: String,
    },
    #[error("bad remote name {name:?}: {reason}")]
    BadRemote { name: String, reason: String },
}

/// Why a host name (or SSH user target) was refused. `input` is the offending text, truncated
/// and escaped for display; `form`/`expected`/`pattern` say what would have been accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("invalid host \"{input}\": empty name; expected {form}")]
    Empty { input: String, form: String },
    #[error("invalid host \"{input}\": {len} bytes, over the 253-byte limit for a host name")]
    TooLong { input: String, len: usize },
    #[error("invalid host \"{input}\": label \"{label}\" is {len} bytes, over the 63-byte limit")]
    LabelTooLong {
        input: String,
        label: String,
        len: usize,
    },
    #[error(
        "invalid host \"{input}\": empty label (leading, trailing or doubled dot); expected {form}"
    )]
    EmptyLabel { input: String, form: String },
    #[error("invalid host \"{input}\": bad character {} in label \"{label}\"; labels use a-z, 0-9 and '-'", show_char(*.ch))]
    BadCharacter {
        input: String,
        label: String,
        ch: char,
    },
    #[error("invalid host \"{input}\": label \"{label}\" starts or ends with '-'")]
    HyphenAtEdge { input: String, label: String },
    #[error("invalid host \"{input}\": expected a name ending in .{suffix}")]
    WrongSuffix { input: String, suffix: String },
    #[error("invalid host \"{input}\": no workload label; expected {form}")]
    MissingWorkload { input: String, form: String },
    #[error("invalid host \"{input}\": too many labels; expected {form}")]
    /// `labels` counts the labels before the suffix.
    TooManyLabels {
        input: String,
        labels: usize,
        form: String,
    },
    #[error("invalid host \"{input}\": unknown workload kind; expected {expected}")]
    UnknownKind {
        input: String,
        workload: String,
        expected: String,
    },
    #[error("invalid host \"{input}\": expected {pattern}")]
    Malformed {
        input: String,
        kind: String,
        pattern: String,
    },
    #[error("invalid host \"{input}\": unknown remote \"{remote}\"; known remotes: {}", known_list(.known))]
    UnknownRemote {
        input: String,
        remote: String,
        known: Vec<String>,
    },
}

impl HostError {
    /// Short stable label per variant (bounded cardinality, for metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            HostError::Empty { .. } => "empty",
            HostError::TooLong { .. } => "too_long",
            HostError::LabelTooLong { .. } => "label_too_long",
            HostError::EmptyLabel { .. } => "empty_label",
            HostError::BadCharacter { .. } => "bad_character",
            HostError::HyphenAtEdge { .. } => "hyphen_at_edge",
            HostError::WrongSuffix { .. } => "wrong_suffix",
            HostError::MissingWorkload { .. } => "missing_workload",
            HostError::TooManyLabels { .. } => "too_many_labels",
            HostError::UnknownKind { .. } => "unknown_kind",
            HostError::Malformed { .. } => "malformed",
            HostError::UnknownRemote { .. } => "unknown_remote",
        }
    }
}

/// A placeholder template (route backend, principal, ...) that [`Target::expand`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error(
        "template {template:?}: no value for {{{name}}} (unknown, or an optional field absent here); available: {available}"
    )]
    UnknownPlaceholder {
        template: String,
        name: String,
        available: String,
    },
    #[error("template {template:?}: unclosed '{{'")]
    Unclosed { template: String },
    #[error("template {template:?}: '}}' without '{{'")]
    StrayClose { template: String },
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
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// [`DEFAULT_REMOTE`] when `remote` is `None`.
    pub fn remote_name(&self) -> &str {
        self.remote.as_deref().unwrap_or(DEFAULT_REMOTE)
    }

    /// The workload label (first label of `host`).
    pub fn workload(&self) -> &str {
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
    pub fn expand(&self, template: &str) -> Result<String, ExpandError> {
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

/// The placeholder names used by `template`, in order, e.g. to check route templates at load.
pub fn placeholders(template: &str) -> Result<Vec<&str>, ExpandError> {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Id,
    Num,
    Slug,
}

impl Class {
    /// Lengths of the prefixes of `s` this class accepts, longest first.
    fn lengths(self, s: &[u8]) -> Vec<usize> {
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let mut out: Vec<usize> = match self {
            Class::Id => (1..=s.iter().take_while(|b| alnum(b)).count()).collect(),
            Class::Num => (1..=s.iter().take_while(|b| b.is_ascii_digit()).count()).collect(),
            Class::Slug => {
                let (mut out, mut after_dash) = (Vec::new(), true);
                for (i, b) in s.iter().enumerate() {
                    if alnum(b) {
                        out.push(i + 1);
                        after_dash = false;
                    } else if *b == b'-' && !after_dash {
                        after_dash = true;
                    } else {
                        break;
                    }
                }
                out
            }
        };
        out.reverse();
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(String),
    Field(String, Class),
}

#[derive(Debug, Clone)]
struct Kind {
    name: String,
    prefix: String,
    /// Human form, e.g. `model-<model_id>-<deployment_id>[-<replica_id>]`.
    pattern: String,
    fields: Vec<String>,
    /// Token sequences to try in order: with the optional group, then without.
    alts: Vec<Vec<Tok>>,
}

/// The inside of `{name}` or `{name:class}`.
fn parse_field(body: &str) -> Result<(&str, Class), String> {
    let (name, class) = body.split_once(':').unwrap_or((body, "id"));
    let class = match class {
        "id" => Class::Id,
        "num" => Class::Num,
        "slug" => Class::Slug,
        other => {
            return Err(format!(
                "unknown field type {other:?} for {name:?}; use id, num or slug"
            ));
        }
    };
    let mut chars = name.chars();
    let head_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !head_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(format!("bad field name {name:?}; use [a-z_][a-z0-9_]*"));
    }
    if BUILTIN_PLACEHOLDERS.contains(&name) {
        return Err(format!("field name {name:?} is reserved"));
    }
    Ok((name, class))
}

impl Kind {
    fn compile(spec: &KindSpec) -> Result<Kind, String> {
        let t = spec.template.as_str();
        let (mut items, mut fields, mut pattern) = (
            Vec::<(Tok, bool)>::new(),
            Vec::<String>::new(),
            String::new(),
        );
        let (mut in_group, mut groups, mut group_len) = (false, 0, 0);
        let mut chars = t.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' => {
                    let mut body = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, c)) => body.push(c),
                            None => return Err(format!("unclosed '{{' at byte {i}")),
                        }
                    }
                    let (name, class) = parse_field(&body)?;
                    if fields.iter().any(|f| f == name) {
                        return Err(format!("field {name:?} appears twice"));
                    }
                    fields.push(name.to_string());
                    pattern.push_str(&format!("<{name}>"));
                    items.push((Tok::Field(name.to_string(), class), in_group));
                    group_len += 1;
                    continue;
                }
                '}' => return Err(format!("'}}' without '{{' at byte {i}")),
                '[' if in_group => return Err(format!("nested '[' at byte {i}")),
                '[' if groups > 0 => return Err("only one optional group [...] is allowed".into()),
                '[' => (in_group, groups, group_len) = (true, 1, 0),
                ']' if !in_group => return Err(format!("']' without '[' at byte {i}")),
                ']' if group_len == 0 => return Err("empty optional group []".into()),
                ']' => in_group = false,
                c if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' => {
                    items.push((Tok::Lit(c.to_string()), in_group));
                    group_len += 1;
                }
                c => {
                    return Err(format!(
                        "character {c:?} is not allowed; literals use a-z, 0-9 and '-', fields {{name}}, {{name:num}} or {{name:slug}}"
                    ));
                }
            }
            pattern.push(c);
        }
        if in_group {
            return Err("unclosed '['".into());
        }
        let prefix: String = items
            .iter()
            .map_while(|(tok, grouped)| match tok {
                Tok::Lit(s) if !grouped => Some(s.as_str()),
                _ => None,
            })
            .collect();
        if prefix.is_empty() {
            return Err("must start with a literal prefix such as \"model-\"".into());
        }
        if prefix.starts_with('-') || t.ends_with('-') {
            return Err("must not start or end with '-'".into());
        }
        let flatten = |with_group: bool| {
            let mut out: Vec<Tok> = Vec::new();
            for (tok, _) in items.iter().filter(|(_, grouped)| with_group || !grouped) {
                match (out.last_mut(), tok) {
                    (Some(Tok::Lit(a)), Tok::Lit(b)) => a.push_str(b),
                    _ => out.push(tok.clone()),
                }
            }
            out
        };
        let alts = if groups > 0 {
            vec![flatten(true), flatten(false)]
        } else {
            vec![flatten(true)]
        };
        Ok(Kind {
            name: spec.name.clone(),
            prefix,
            pattern,
            fields,
            alts,
        })
    }

    /// Field values if `label` matches; first full match wins.
    fn matches(&self, label: &str) -> Option<Vec<(String, String)>> {
        self.alts.iter().find_map(|toks| {
            let bytes = label.as_bytes();
            let mut m = Matcher {
                toks,
                label: bytes,
                failed: vec![false; (toks.len() + 1) * (bytes.len() + 1)],
                caps: Vec::new(),
            };
            m.run(0, 0).then(|| {
                m.caps
                    .iter()
                    .map(|&(name, a, b)| {
                        (
                            name.to_string(),
                            label.get(a..b).unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
        })
    }
}

struct Matcher<'a> {
    toks: &'a [Tok],
    label: &'a [u8],
    /// (token, position) states already known not to lead to a full match.
    failed: Vec<bool>,
    caps: Vec<(&'a str, usize, usize)>,
}

impl<'a> Matcher<'a> {
    fn run(&mut self, ti: usize, pos: usize) -> bool {
        let toks = self.toks;
        let Some(tok) = toks.get(ti) else {
            return pos == self.label.len();
        };
        let key = ti * (self.label.len() + 1) + pos;
        if self.failed.get(key).copied().unwrap_or(true) {
            return false;
        }
        let rest = self.label.get(pos..).unwrap_or_default();
        let ok = match tok {
            Tok::Lit(lit) => rest.starts_with(lit.as_bytes()) && self.run(ti + 1, pos + lit.len()),
            Tok::Field(name, class) => class.lengths(rest).into_iter().any(|n| {
                self.caps.push((name, pos, pos + n));
                let ok = self.run(ti + 1, pos + n);
                if !ok {
                    self.caps.pop();
                }
                ok
            }),
        };
        if !ok && let Some(slot) = self.failed.get_mut(key) {
            *slot = true;
        }
        ok
    }
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
            Dns::TooLong(len) => format!("{len} bytes, over the 253-byte limit"),
            Dns::EmptyLabel => "empty label".into(),
            Dns::LabelTooLong(label, len) => format!("label \"{label}\" is {len} bytes, over 63"),
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

/// Network text for messages: at most [`MAX_SHOWN`] chars, non-printables escaped.
fn show(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_SHOWN {
            out.push_str("...");
            break;
        }
        if c == '\'' {
            out.push(c)
        } else {
            out.extend(c.escape_default())
        }
    }
    out
}

fn show_char(c: char) -> String {
    format!("'{}'", c.escape_default())
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none configured".into()
    } else {
        known.join(", ")
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
    pub fn new(
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

    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// Human patterns of all kinds, e.g. `training-job-<job_id>-<node> or model-<model_id>-...`.
    pub fn expected(&self) -> String {
        self.expected.clone()
    }

    /// Field names of `kind` in template order (optional ones included), if the kind exists.
    pub fn kind_fields(&self, kind: &str) -> Option<Vec<&str>> {
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
    pub fn parse_user_target(&self, user: &str) -> Result<Target, HostError> {
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
            return Err(match best {
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

#[cfg(test)]
#[path = "hostname_tests.rs"]
mod tests;
