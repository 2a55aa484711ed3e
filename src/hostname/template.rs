//! Kind templates: compilation of `literal{field:class}[optional]` into token sequences, and
//! the memoised backtracking matcher that applies them to a workload label.

use super::{BUILTIN_PLACEHOLDERS, KindSpec, MAX_NUM_DIGITS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Id,
    Num,
    Slug,
}

impl Class {
    /// Lengths of the prefixes of `s` this class accepts, longest first. `bounded`: a number
    /// has at most [`MAX_NUM_DIGITS`] digits (unbounded only to explain a refusal).
    fn lengths(self, s: &[u8], bounded: bool) -> Vec<usize> {
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let mut out: Vec<usize> = match self {
            Class::Id => (1..=s.iter().take_while(|b| alnum(b)).count()).collect(),
            Class::Num => {
                let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
                let max = if bounded { MAX_NUM_DIGITS } else { digits };
                (1..=digits.min(max)).collect()
            }
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
pub(super) struct Kind {
    pub(super) name: String,
    pub(super) prefix: String,
    /// Human form, e.g. `model-<model_id>-<deployment_id>[-<replica_id>]`.
    pub(super) pattern: String,
    /// The field names in order; read by the grammar's tests (`kind_fields`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fields: Vec<String>,
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
    pub(super) fn compile(spec: &KindSpec) -> Result<Kind, String> {
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
    pub(super) fn matches(&self, label: &str) -> Option<Vec<(String, String)>> {
        self.captures(label, true).map(|caps| {
            caps.into_iter()
                .map(|(name, _, value)| (name.to_string(), value.to_string()))
                .collect()
        })
    }

    /// When `label` fails [`Kind::matches`] only because a number has too many digits: that
    /// field and its value.
    pub(super) fn oversized_number<'l>(&self, label: &'l str) -> Option<(&str, &'l str)> {
        self.captures(label, false)?
            .into_iter()
            .find(|(_, class, value)| *class == Class::Num && value.len() > MAX_NUM_DIGITS)
            .map(|(name, _, value)| (name, value))
    }

    fn captures<'l>(&self, label: &'l str, bounded: bool) -> Option<Vec<(&str, Class, &'l str)>> {
        self.alts.iter().find_map(|toks| {
            let bytes = label.as_bytes();
            let mut m = Matcher {
                toks,
                label: bytes,
                bounded,
                failed: vec![false; (toks.len() + 1) * (bytes.len() + 1)],
                caps: Vec::new(),
            };
            m.run(0, 0).then(|| {
                m.caps
                    .iter()
                    .map(|&(name, class, a, b)| (name, class, label.get(a..b).unwrap_or_default()))
                    .collect()
            })
        })
    }
}

struct Matcher<'a, 'l> {
    toks: &'a [Tok],
    label: &'l [u8],
    bounded: bool,
    /// (token, position) states already known not to lead to a full match.
    failed: Vec<bool>,
    caps: Vec<(&'a str, Class, usize, usize)>,
}

impl<'a> Matcher<'a, '_> {
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
            Tok::Field(name, class) => class.lengths(rest, self.bounded).into_iter().any(|n| {
                self.caps.push((name, *class, pos, pos + n));
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
