//! Error types of the host-name grammar, and the quoting/escaping of network text in their
//! messages.

use super::formats::{MAX_LABEL, MAX_NAME};
use crate::text::{escape_untrusted, quote_untrusted_char};

/// Longest network text (in escaped output characters) shown in a message.
const MAX_SHOWN: usize = 100;

/// A configuration problem found by [`HostGrammar::new`](super::HostGrammar::new).
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
    #[error(
        "invalid host \"{input}\": {len} bytes, over the {MAX_NAME}-byte limit for a host name"
    )]
    TooLong { input: String, len: usize },
    #[error(
        "invalid host \"{input}\": label \"{label}\" is {len} bytes, over the {MAX_LABEL}-byte limit"
    )]
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
    #[error(
        "invalid host \"{input}\": <{field}> has {digits} digits, over the limit of {max} (0 to {largest}); expected {pattern}",
        max = super::MAX_NUM_DIGITS,
        largest = 10u64.pow(super::MAX_NUM_DIGITS as u32) - 1
    )]
    NumberTooLong {
        input: String,
        field: String,
        digits: usize,
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
    pub(crate) fn reason(&self) -> &'static str {
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
            HostError::NumberTooLong { .. } => "number_too_long",
            HostError::UnknownRemote { .. } => "unknown_remote",
        }
    }
}

/// A placeholder template (route backend, principal, ...) that
/// [`Target::expand`](super::Target::expand) refused.
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

/// Network text for messages (which put it in double quotes): escaped to printable ASCII, at
/// most [`MAX_SHOWN`] escaped characters, then `...` if cut.
pub(super) fn show(s: &str) -> String {
    escape_untrusted(s, MAX_SHOWN)
}

/// One network character for messages, escaped, in single quotes.
pub(super) fn show_char(c: char) -> String {
    quote_untrusted_char(c)
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none configured".into()
    } else {
        known.join(", ")
    }
}
