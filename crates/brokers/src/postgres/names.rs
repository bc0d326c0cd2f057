//! PostgreSQL names for broker objects, and quoting for the SQL that
//! creates them.
//!
//! OSB ids are arbitrary strings chosen by the platform. They never reach SQL
//! as they are: a database or role name is `ingot_` + a slug of the id (only
//! `[a-z0-9_]`) + a digest of the whole id, so two ids that slug alike still
//! get different names, and every name fits PostgreSQL's 63-byte limit.
//! Utility statements (`CREATE ROLE`, `CREATE DATABASE`, …) take no bind
//! parameters, so the names are still quoted with [`quote_ident`].

use sha2::{Digest, Sha256};

/// Longest id the broker accepts; CF sends GUIDs (36 characters).
pub const MAX_ID_LEN: usize = 128;

/// Characters of the id kept in a name, for a human reading `\l`.
const SLUG_LEN: usize = 24;

/// Whether an OSB instance or binding id is acceptable: 1 to
/// [`MAX_ID_LEN`] characters of `[A-Za-z0-9._-]`. CF uses GUIDs; anything
/// else is refused with a 400 before any SQL runs.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `[a-z0-9_]` only, at most `max` characters.
fn slug(id: &str, max: usize) -> String {
    id.chars()
        .take(max)
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// First 12 hex digits of SHA-256 over the parts, separated by NUL so that
/// `("ab","c")` and `("a","bc")` differ.
fn digest(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(&hasher.finalize()[..6])
}

/// The database of an instance.
pub fn database_name(instance_id: &str) -> String {
    format!(
        "ingot_{}_{}",
        slug(instance_id, SLUG_LEN),
        digest(&[instance_id])
    )
}

/// The NOLOGIN role that owns an instance's database; every binding's role
/// is a member of it.
pub fn owner_role(instance_id: &str) -> String {
    format!("{}_owner", database_name(instance_id))
}

/// The LOGIN role of one binding.
pub fn binding_role(instance_id: &str, binding_id: &str) -> String {
    format!(
        "ingot_bind_{}_{}",
        slug(binding_id, SLUG_LEN),
        digest(&[instance_id, binding_id])
    )
}

/// `"name"` with inner double quotes doubled: a PostgreSQL quoted identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An escape-string literal (`E'…'`) with `\` and `'` escaped, which reads the
/// same whatever `standard_conforming_strings` is set to.
pub fn quote_literal(value: &str) -> String {
    format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        for good in [
            "6f1e2d3c-0000-4000-8000-123456789abc",
            "a",
            "x.y_z-1",
            &"a".repeat(MAX_ID_LEN),
        ] {
            assert!(valid_id(good), "{good:?} should be accepted");
        }
        for bad in [
            "",
            "x\"; DROP DATABASE postgres; --",
            "a b",
            "a/b",
            "é",
            "a'b",
            &"a".repeat(MAX_ID_LEN + 1),
        ] {
            assert!(!valid_id(bad), "{bad:?} should be refused");
        }
    }

    #[test]
    fn names_are_safe_distinct_and_short() {
        let hostile = "X\"; DROP DATABASE postgres; --".repeat(5);
        let ids = ["a-b", "a_b", "A-B", hostile.as_str()];
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            for name in [
                database_name(id),
                owner_role(id),
                binding_role(id, id),
                binding_role("other", id),
            ] {
                assert!(name.len() <= 63, "{name} is too long");
                assert!(
                    name.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{name} has a character outside [a-z0-9_]"
                );
                assert!(seen.insert(name.clone()), "{name} is not unique");
            }
        }
        assert_eq!(
            database_name("a-b"),
            database_name("a-b"),
            "names are stable"
        );
        assert!(database_name("6F1E-x").starts_with("ingot_6f1e_x_"));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "E'it''s'");
        assert_eq!(quote_literal("a\\'b"), "E'a\\\\''b'");
    }
}
