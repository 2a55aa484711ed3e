//! Just enough PromQL lexing to list the metric selectors of an expression: names and their
//! label matchers. Strings, ranges, functions, aggregations, keywords and grouping label
//! lists are skipped.

/// One `metric{label op "value", …}` in an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub metric: String,
    /// (label, operator, value) with the value unquoted.
    pub matchers: Vec<(String, String, String)>,
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];
/// Followed by a parenthesised list of label names.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Index just past the quoted string starting at `i`.
fn skip_string(s: &[char], mut i: usize) -> usize {
    let quote = s[i];
    i += 1;
    while i < s.len() && s[i] != quote {
        if s[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// Index just past the bracket closing the one at `i`, skipping strings inside.
fn skip_group(s: &[char], mut i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    while i < s.len() {
        match s[i] {
            '"' | '\'' | '`' => {
                i = skip_string(s, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

fn next_non_space(s: &[char], mut i: usize) -> usize {
    while i < s.len() && s[i].is_whitespace() {
        i += 1;
    }
    i
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    let inner = v.get(1..v.len().saturating_sub(1)).unwrap_or("");
    inner.replace("\\\\", "\\").replace("\\\"", "\"")
}

/// `label="v", other=~"a|b"` → matchers.
fn parse_matchers(body: &str) -> Vec<(String, String, String)> {
    let chars: Vec<char> = body.chars().collect();
    let mut parts = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(&chars, i);
                continue;
            }
            ',' => {
                parts.push(chars[start..i].iter().collect::<String>());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(chars[start.min(chars.len())..].iter().collect());
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let p = p.trim();
            let at = p
                .find(['=', '!'])
                .unwrap_or_else(|| panic!("label matcher without operator: {p:?}"));
            let op_len = if p[at..].starts_with("=~")
                || p[at..].starts_with("!~")
                || p[at..].starts_with("!=")
            {
                2
            } else {
                1
            };
            (
                p[..at].trim().to_string(),
                p[at..at + op_len].to_string(),
                unquote(&p[at + op_len..]),
            )
        })
        .collect()
}

/// Every metric selector in `expr`, in order.
pub fn selectors(expr: &str) -> Vec<Selector> {
    let s: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&s, i);
        } else if c == '#' {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '[' {
            i = skip_group(&s, i, '[', ']');
        } else if c == '{' {
            // A selector without a name ({__name__=…}): not used here.
            i = skip_group(&s, i, '{', '}');
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.') {
                i += 1;
            }
        } else if c == '$' {
            // A dashboard variable outside braces and ranges.
            i += 1;
            while i < s.len() && (is_ident(s[i]) || s[i] == '{' || s[i] == '}') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < s.len() && is_ident(s[i]) {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let next = next_non_space(&s, i);
            let lower = word.to_lowercase();
            if GROUPING.contains(&lower.as_str()) {
                if s.get(next) == Some(&'(') {
                    i = skip_group(&s, next, '(', ')');
                }
            } else if AGGREGATIONS.contains(&lower.as_str())
                || KEYWORDS.contains(&lower.as_str())
                || s.get(next) == Some(&'(')
            {
                // An aggregation, keyword or function call.
            } else {
                let mut matchers = Vec::new();
                if s.get(next) == Some(&'{') {
                    let end = skip_group(&s, next, '{', '}');
                    let body: String = s[next + 1..end - 1].iter().collect();
                    matchers = parse_matchers(&body);
                    i = end;
                }
                out.push(Selector {
                    metric: word,
                    matchers,
                });
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn selectors_are_found_and_the_rest_skipped() {
    let expr = r#"histogram_quantile(0.99, sum by (le) (rate(ssh_edge_backend_connect_seconds_bucket{job=~"$job", outcome="ok"}[$__rate_interval])))
        / on (job) group_left sum without (instance) (up{job="ssh-edge"} offset 5m) > bool 0.5
        and count_values("v", ssh_edge_sessions_active) unless absent(ssh_edge_logins_total{front="a,b}"})"#;
    let found = selectors(expr);
    let names: Vec<&str> = found.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(
        names,
        [
            "ssh_edge_backend_connect_seconds_bucket",
            "up",
            "ssh_edge_sessions_active",
            "ssh_edge_logins_total"
        ]
    );
    assert_eq!(
        found[0].matchers,
        [
            ("job".to_string(), "=~".to_string(), "$job".to_string()),
            ("outcome".to_string(), "=".to_string(), "ok".to_string())
        ]
    );
    assert_eq!(found[3].matchers[0].2, "a,b}");
    assert!(selectors("1 + 2e3 * 0.5").is_empty());
}
