//! Sync rules (`outpost gateway --rules FILE`, docs/gateway.md "Sync
//! rules"): per-table row filters written as SQL conditions over the
//! table's columns, parameterised by the token's claims (`$sub`, `$org`).
//!
//! ```toml
//! claims = ["org"]          # claims other than `sub` the rules may use
//!
//! [[rule]]
//! table = "Post"
//! where = '"userId" = $sub'
//! ```
//!
//! A claim is never spliced into SQL: [`rewrite`] turns each `$name` into
//! `current_setting('outpost.claim.name')` (text; users cast where needed,
//! `$sub::int`), and the gateway sets those settings on its session with
//! bound values before it runs a node's bootstrap, pull or push. That
//! works in `COPY (SELECT …)`, which takes no parameters, as well as in the
//! pull's and push's prepared statements, whose text is then the same for
//! every node. The condition is read by a tokenizer that knows SQL's
//! string literals (`'…'`, `E'…'`), quoted identifiers, dollar quoting and
//! comments, so a `$` inside any of them is left alone; positional
//! parameters (`$1`) and `;` are refused.
//!
//! What is checked here, without a database: the file's shape, one rule
//! per table, the tokens, and that every claim used is `sub` or declared
//! in `claims` (a misspelt `$sbu` stops the gateway instead of refusing
//! every node). The gateway checks the rest at start against PostgreSQL
//! (the table exists and is served, the condition prepares:
//! [`crate::Gateway::start`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use outpost_remote::feed::{Scope, TableScope};
use serde::Deserialize;
use sha2::Digest;

/// The prefix of the settings claims are read from.
pub const CLAIM_SETTING: &str = "outpost.claim.";

/// The claim every token has: the principal.
pub const SUB: &str = "sub";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    claims: Vec<String>,
    #[serde(default)]
    rule: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    table: String,
    #[serde(rename = "where")]
    condition: String,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its position in the file, from 1.
    pub index: usize,
    /// The table it filters.
    pub table: String,
    /// The condition as written.
    pub source: String,
    /// The condition with claims read from settings.
    pub sql: String,
    /// The claims it uses.
    pub claims: BTreeSet<String>,
}

impl Rule {
    /// How messages name it: `rule 2 (table "Post")`.
    pub fn label(&self) -> String {
        format!("rule {} (table {:?})", self.index, self.table)
    }
}

/// A rules file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Where it was read from (for messages).
    pub origin: String,
    /// The rules by table.
    pub rules: BTreeMap<String, Rule>,
}

impl Rules {
    /// Reads and checks the rules file at `path`.
    pub fn load(path: &Path) -> Result<Rules, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the rules file {}: {e}", path.display()))?;
        Rules::parse(&text, &path.display().to_string())
    }

    /// Checks the rules in `text` (read from `origin`).
    pub fn parse(text: &str, origin: &str) -> Result<Rules, String> {
        let file: File = toml::from_str(text)
            .map_err(|e| format!("the rules file {origin} cannot be read: {e}"))?;
        let mut declared: BTreeMap<String, String> = BTreeMap::new();
        declared.insert(SUB.into(), SUB.into());
        for c in &file.claims {
            if !is_name(c) {
                return Err(format!(
                    "the rules file {origin}: claim {c:?} is not a name (letters, digits, _; not starting with a digit)"
                ));
            }
            // Settings' names are case-insensitive in PostgreSQL: two
            // claims differing only in case would read one setting.
            if let Some(other) = declared.insert(c.to_lowercase(), c.clone())
                && other != *c
            {
                return Err(format!(
                    "the rules file {origin}: claims {other:?} and {c:?} differ only in case, which the rules cannot tell apart"
                ));
            }
        }
        if file.rule.is_empty() {
            return Err(format!(
                "the rules file {origin} has no [[rule]]: with no rule, no table would be served"
            ));
        }
        let mut rules = BTreeMap::new();
        for (n, e) in file.rule.into_iter().enumerate() {
            let index = n + 1;
            let name = |table: &str| format!("{origin}: rule {index} (table {table:?})");
            if e.table.trim().is_empty() {
                return Err(format!("{origin}: rule {index} names no table"));
            }
            if e.condition.trim().is_empty() {
                return Err(format!(
                    "{}: `where` is empty (write 'true' for every row)",
                    name(&e.table)
                ));
            }
            let (sql, claims) =
                rewrite(&e.condition).map_err(|m| format!("{}: {m}", name(&e.table)))?;
            for c in &claims {
                if declared.get(&c.to_lowercase()) != Some(c) {
                    return Err(format!(
                        "{}: unknown claim ${c}: a claim other than `sub` must be listed in `claims = [...]` at the top of the file (names are case-sensitive)",
                        name(&e.table)
                    ));
                }
            }
            let rule = Rule {
                index,
                table: e.table.clone(),
                source: e.condition,
                sql,
                claims,
            };
            if let Some(first) = rules.insert(e.table.clone(), rule) {
                return Err(format!(
                    "{}: table {:?} already has rule {}; combine the conditions with OR in one rule",
                    name(&e.table),
                    e.table,
                    first.index
                ));
            }
        }
        Ok(Rules {
            origin: origin.to_string(),
            rules,
        })
    }

    /// The tables with a rule: the only ones served.
    pub fn tables(&self) -> Vec<String> {
        self.rules.keys().cloned().collect()
    }

    /// The feed's scope: each table's condition.
    pub fn scope(&self) -> Scope {
        Scope {
            tables: self
                .rules
                .iter()
                .map(|(t, r)| {
                    (
                        t.clone(),
                        TableScope {
                            rule: r.label(),
                            condition: r.sql.clone(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The digest of the rows of `table` a node holding `claims` is
    /// served: its rule's condition and the values of the claims it reads.
    /// `None` for the whole table (no rule, or a rule that is just `true`),
    /// which is what a direct connection serves. A node records the digest
    /// each table was copied under and copies the table again when a pull
    /// reports another one (docs/gateway.md, "Changing the rules"), so a
    /// rule edited in the file, or a token naming another principal,
    /// re-syncs exactly the tables whose rows differ.
    pub fn digest(&self, table: &str, claims: &crate::auth::ClaimValues) -> Option<String> {
        let rule = self.rules.get(table)?;
        if rule.sql.trim().eq_ignore_ascii_case("true") {
            return None;
        }
        let values: Vec<(&str, Option<&str>)> = rule
            .claims
            .iter()
            .map(|c| (c.as_str(), claims.get(c).map(String::as_str)))
            .collect();
        // JSON keeps the parts apart (no two inputs write the same bytes).
        let json = serde_json::to_vec(&(&rule.sql, values)).unwrap_or_default();
        Some(hex::encode(sha2::Sha256::digest(&json)))
    }

    /// The claims the rules of `tables` use (every table's when `None`).
    pub fn claims_of<'a>(
        &self,
        tables: Option<impl IntoIterator<Item = &'a str>>,
    ) -> BTreeSet<String> {
        match tables {
            None => self
                .rules
                .values()
                .flat_map(|r| r.claims.iter().cloned())
                .collect(),
            Some(list) => list
                .into_iter()
                .filter_map(|t| self.rules.get(t))
                .flat_map(|r| r.claims.iter().cloned())
                .collect(),
        }
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// `cond` with each claim reference `$name` replaced by
/// `current_setting('outpost.claim.name')`, comments replaced by a space,
/// and the claims used; or why the condition is refused.
///
/// SQL's lexical rules followed: `'…'` (with `''`), `E'…'` (with
/// backslash escapes), `"…"` (with `""`), `$tag$…$tag$` and `$$…$$`, `--`
/// to the end of the line and nested `/* … */`; a `$` inside an
/// identifier (`a$b`) is the identifier's. Refused: `$1` (positional
/// parameters: the rules have none), `;` (one condition, not statements),
/// unbalanced parentheses (the condition is wrapped in them), and
/// anything unterminated.
pub fn rewrite(cond: &str) -> Result<(String, BTreeSet<String>), String> {
    let chars: Vec<char> = cond.chars().collect();
    let mut out = String::with_capacity(cond.len() + 32);
    let mut claims = BTreeSet::new();
    let mut depth: i64 = 0;
    let mut i = 0;
    // The previous character written outside literals and comments, to
    // tell `E'…'` and `a$b` apart.
    let mut prev: Option<char> = None;
    let mut prev2: Option<char> = None;
    let push = |out: &mut String, s: &[char]| out.extend(s.iter());
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\'' => {
                // E'…' (or e'…') when the E is a token of its own.
                let escapes = matches!(prev, Some('e' | 'E')) && !prev2.is_some_and(ident_char);
                let start = i;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("a string literal ('…') is not terminated".into()),
                        Some('\\') if escapes => i += 2,
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => i += 2,
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                push(&mut out, &chars[start..i.min(chars.len())]);
                prev = Some('\'');
                prev2 = None;
                continue;
            }
            '"' => {
                let start = i;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("a quoted identifier (\"…\") is not terminated".into()),
                        Some('"') if chars.get(i + 1) == Some(&'"') => i += 2,
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                push(&mut out, &chars[start..i]);
                prev = Some('"');
                prev2 = None;
                continue;
            }
            '-' if next == Some('-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                out.push(' ');
                prev = Some(' ');
                continue;
            }
            '/' if next == Some('*') => {
                let mut nest = 0;
                loop {
                    match (chars.get(i), chars.get(i + 1)) {
                        (Some('/'), Some('*')) => {
                            nest += 1;
                            i += 2;
                        }
                        (Some('*'), Some('/')) => {
                            nest -= 1;
                            i += 2;
                            if nest == 0 {
                                break;
                            }
                        }
                        (Some(_), _) => i += 1,
                        (None, _) => return Err("a comment (/* … */) is not terminated".into()),
                    }
                }
                out.push(' ');
                prev = Some(' ');
                continue;
            }
            '$' if prev.is_some_and(ident_char) => {
                // Part of an identifier (`a$b`).
            }
            '$' => {
                // A tag `$name$` / `$$` opens a dollar-quoted string; `$name`
                // not followed by `$` is a claim; `$1` a positional parameter.
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                if chars.get(j) == Some(&'$') && !name.starts_with(|c: char| c.is_ascii_digit()) {
                    let tag: Vec<char> = chars[i..=j].to_vec();
                    let body = j + 1;
                    let end = (body..=chars.len().saturating_sub(tag.len()))
                        .find(|&k| chars[k..k + tag.len()] == tag[..]);
                    let Some(end) = end else {
                        let tag: String = tag.iter().collect();
                        return Err(format!(
                            "a dollar-quoted string opened by {tag} is not closed (a claim followed by `$` needs a space: `${name} $`)"
                        ));
                    };
                    push(&mut out, &chars[i..end + tag.len()]);
                    i = end + tag.len();
                    prev = Some('$');
                    prev2 = None;
                    continue;
                }
                if name.is_empty() {
                    return Err("a `$` that is neither a claim ($sub) nor a dollar quote".into());
                }
                if name.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(format!(
                        "${name}: positional parameters are not allowed; name a claim instead ($sub)"
                    ));
                }
                out.push_str(&format!("current_setting('{CLAIM_SETTING}{name}')"));
                claims.insert(name);
                i = j;
                prev = Some(')');
                prev2 = None;
                continue;
            }
            ';' => return Err("`;` is not allowed: a rule is one condition".into()),
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("a `)` closes no `(`".into());
                }
            }
            _ => {}
        }
        out.push(c);
        prev2 = prev;
        prev = Some(c);
        i += 1;
    }
    if depth != 0 {
        return Err("a `(` is not closed".into());
    }
    Ok((out, claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(cond: &str) -> (String, Vec<String>) {
        let (sql, claims) = rewrite(cond).unwrap_or_else(|e| panic!("{cond}: {e}"));
        (sql, claims.into_iter().collect())
    }

    #[test]
    fn claims_become_settings_and_literals_stay() {
        assert_eq!(
            ok(r#""userId" = $sub"#),
            (
                r#""userId" = current_setting('outpost.claim.sub')"#.into(),
                vec!["sub".into()]
            )
        );
        assert_eq!(
            ok(r#""ownerId" = $sub::int AND org = $org"#).1,
            vec!["org".to_string(), "sub".into()]
        );
        // `$` inside literals, identifiers and dollar quotes is theirs.
        for kept in [
            "note = '$sub'",
            "note = 'it''s $sub'",
            r"note = E'\' $sub'",
            r#""a$sub" = 1"#,
            r#""we""ird $x" = 1"#,
            "note = $$ $sub $$",
            "note = $q$ it's $sub $q$",
            "a$b = 1",
            "note = 'x' -- $sub\n",
            "note = 'x' /* $sub /* nested */ $sub */",
        ] {
            let (sql, claims) = ok(kept);
            assert!(claims.is_empty(), "{kept}: {claims:?}");
            assert!(!sql.contains("current_setting"), "{kept}: {sql}");
        }
        // A comment ends where it ends; the claim after it is one.
        assert_eq!(ok("/* c */ x = $sub").1, vec!["sub".to_string()]);
        assert_eq!(ok("x = 1 -- c\n AND y = $sub").1, vec!["sub".to_string()]);
    }

    #[test]
    fn ambiguous_or_dangerous_conditions_are_refused() {
        for (bad, why) in [
            ("id = $1", "positional"),
            ("true; DROP TABLE x", "`;`"),
            ("note = 'open", "not terminated"),
            ("\"open = 1", "not terminated"),
            ("note = $q$ open", "not closed"),
            ("x = $sub$", "not closed"),
            ("/* open", "not terminated"),
            ("true) OR (true", "closes no"),
            ("(true", "not closed"),
            ("x = $", "neither"),
        ] {
            let e = rewrite(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn files_are_checked_rule_by_rule() {
        let good = Rules::parse(
            "claims = [\"org\"]\n[[rule]]\ntable = \"Post\"\nwhere = '\"userId\" = $sub'\n\
             [[rule]]\ntable = \"Team\"\nwhere = 'org = $org'\n",
            "rules.toml",
        )
        .expect("rules");
        assert_eq!(good.tables(), vec!["Post".to_string(), "Team".into()]);
        let all = good.claims_of(None::<Vec<&str>>);
        assert_eq!(all.into_iter().collect::<Vec<_>>(), vec!["org", "sub"]);
        let post = good.claims_of(Some(["Post"]));
        assert_eq!(post.into_iter().collect::<Vec<_>>(), vec!["sub"]);
        let err = |text: &str| Rules::parse(text, "r.toml").expect_err(text);
        assert!(
            err("[[rule]]\ntable = \"T\"\nwhere = 'a = $orgg'").contains("unknown claim $orgg")
        );
        assert!(err("[[rule]]\ntable = \"T\"\nwhere = 'a = $1'").contains("rule 1 (table \"T\")"));
        assert!(
            err(
                "[[rule]]\ntable = \"T\"\nwhere = 'true'\n[[rule]]\ntable = \"T\"\nwhere = 'false'"
            )
            .contains("already has rule 1")
        );
        assert!(err("[[rule]]\ntable = \"T\"\nwhere = ''").contains("empty"));
        assert!(err("[[rule]]\ntable = \"T\"\nfilter = 'x'").contains("cannot be read"));
        assert!(err("claims = []\n").contains("no [[rule]]"));
        assert!(
            err("claims = [\"Org\", \"org\"]\n[[rule]]\ntable = \"T\"\nwhere = 'true'")
                .contains("only in case")
        );
    }

    #[test]
    fn a_tables_digest_changes_with_its_rule_and_the_claims_it_reads_only() {
        let rules = |post: &str| {
            Rules::parse(
                &format!(
                    "claims = [\"org\"]\n[[rule]]\ntable = \"User\"\nwhere = ' TRUE '\n\
                     [[rule]]\ntable = \"Post\"\nwhere = '{post}'\n\
                     [[rule]]\ntable = \"Team\"\nwhere = 'org = $org'\n"
                ),
                "r.toml",
            )
            .expect("rules")
        };
        let claims = |sub: &str, org: &str| -> crate::auth::ClaimValues {
            [
                ("sub".to_string(), sub.to_string()),
                ("org".into(), org.into()),
            ]
            .into_iter()
            .collect()
        };
        let one = rules(r#""userId" = $sub"#);
        let u1 = claims("u1", "o1");
        // `true` is the whole table, as a direct connection serves it; a
        // table without a rule is not filtered by the digest either.
        assert_eq!(one.digest("User", &u1), None);
        assert_eq!(one.digest("Nope", &u1), None);
        let post = one.digest("Post", &u1).expect("a digest");
        assert_eq!(post.len(), 64);
        // Stable for the same rule and claims (every gateway agrees) ...
        assert_eq!(
            rules(r#""userId" = $sub"#).digest("Post", &u1),
            Some(post.clone())
        );
        // ... and a claim the rule does not read changes nothing.
        assert_eq!(one.digest("Post", &claims("u1", "o2")), Some(post.clone()));
        assert_ne!(
            one.digest("Team", &claims("u1", "o2")),
            one.digest("Team", &u1)
        );
        // Another principal or another condition is another digest.
        assert_ne!(one.digest("Post", &claims("u2", "o1")), Some(post.clone()));
        assert_ne!(
            rules(r#""userId" = $sub OR true"#).digest("Post", &u1),
            Some(post)
        );
    }
}
