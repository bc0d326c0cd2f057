//! `.cfignore`: which files of an app directory `push` leaves out.
//!
//! The patterns read like `.gitignore`'s: one per line, `#` comments, `!`
//! re-includes, a trailing `/` matches directories only, a pattern with a `/`
//! in it (or a leading one) is anchored at the app directory, one without
//! matches at any depth, `*` and `?` stop at `/`, `**` crosses directories.
//! The last pattern that matches decides. A directory that is ignored is
//! ignored with everything in it. Like `cf`, these are always ignored:
//! `.cfignore`, `/manifest.yml`, `.gitignore`, `.git`, `.hg`, `.svn`,
//! `_darcs`, `.DS_Store`.

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{ClientError, Result};

/// What `cf` leaves out of every push, before the app's own `.cfignore`.
pub const DEFAULT_IGNORES: &[&str] = &[
    ".cfignore",
    "/manifest.yml",
    ".gitignore",
    ".git",
    ".hg",
    ".svn",
    "_darcs",
    ".DS_Store",
];

#[derive(Debug)]
struct Rule {
    negate: bool,
    dir_only: bool,
    itself: GlobMatcher,
    under: GlobMatcher,
}

/// A compiled list of ignore patterns.
#[derive(Debug, Default)]
pub struct IgnoreMatcher {
    rules: Vec<Rule>,
}

impl IgnoreMatcher {
    /// A matcher that ignores nothing.
    pub fn none() -> IgnoreMatcher {
        IgnoreMatcher::default()
    }

    /// The defaults followed by the patterns of a `.cfignore` file's text.
    pub fn with_defaults(cfignore: &str) -> Result<IgnoreMatcher> {
        let mut m = IgnoreMatcher::none();
        for p in DEFAULT_IGNORES {
            m.add(p)?;
        }
        for line in cfignore.lines() {
            m.add(line)?;
        }
        Ok(m)
    }

    /// Adds one pattern line; blank lines and comments are skipped.
    pub fn add(&mut self, line: &str) -> Result<()> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        let (negate, pat) = match line.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let dir_only = pat.ends_with('/');
        let pat = pat.trim_end_matches('/');
        let anchored = pat.starts_with('/') || pat.contains('/');
        let pat = pat.trim_start_matches('/');
        if pat.is_empty() {
            return Ok(());
        }
        let itself = if anchored || pat.starts_with("**/") {
            pat.to_string()
        } else {
            format!("**/{pat}")
        };
        let under = format!("{itself}/**");
        self.rules.push(Rule {
            negate,
            dir_only,
            itself: compile(&itself, line)?,
            under: compile(&under, line)?,
        });
        Ok(())
    }

    /// Whether `path` (relative to the app directory, `/`-separated) is left
    /// out; `is_dir` says whether it is a directory.
    pub fn is_ignored(&self, path: &str, is_dir: bool) -> bool {
        let mut ignored = false;
        for rule in &self.rules {
            let hit = rule.under.is_match(path)
                || ((!rule.dir_only || is_dir) && rule.itself.is_match(path));
            if hit {
                ignored = !rule.negate;
            }
        }
        ignored
    }
}

fn compile(glob: &str, line: &str) -> Result<GlobMatcher> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| ClientError::Invalid {
            what: format!(".cfignore pattern {line:?}"),
            detail: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(text: &str) -> IgnoreMatcher {
        IgnoreMatcher::with_defaults(text).expect("valid patterns")
    }

    #[test]
    fn cfignore_patterns_match_like_gitignore() {
        let m = matcher(
            "# comment\n\
             *.log\n\
             /build\n\
             tmp/\n\
             docs/*.md\n\
             !keep.log\n\
             **/cache\n\
             secret?.txt\n",
        );
        let cases: &[(&str, bool, bool)] = &[
            ("app.log", false, true),
            ("sub/dir/app.log", false, true),
            ("keep.log", false, false),
            ("sub/keep.log", false, false),
            ("build", true, true),
            ("build/out.bin", false, true),
            ("src/build", true, false),
            ("tmp", true, true),
            ("tmp", false, false),
            ("a/tmp/x", false, true),
            ("docs/readme.md", false, true),
            ("docs/sub/readme.md", false, false),
            ("readme.md", false, false),
            ("x/y/cache/z", false, true),
            ("secret1.txt", false, true),
            ("secret12.txt", false, false),
            ("app.py", false, false),
            ("logs.d/app.logx", false, false),
        ];
        for (path, is_dir, want) in cases {
            assert_eq!(m.is_ignored(path, *is_dir), *want, "{path} (dir: {is_dir})");
        }
    }

    #[test]
    fn defaults_are_always_ignored() {
        let m = matcher("");
        for p in [
            ".git",
            ".git/HEAD",
            ".cfignore",
            "manifest.yml",
            "a/.svn/x",
            "_darcs",
            "x/.DS_Store",
            ".gitignore",
            ".hg",
        ] {
            assert!(m.is_ignored(p, false), "{p} must be ignored");
        }
        // Only the top-level manifest is the push's own.
        assert!(!m.is_ignored("config/manifest.yml", false));
        assert!(!m.is_ignored("index.html", false));
    }

    #[test]
    fn the_app_can_re_include_a_default() {
        let m = matcher("!.gitignore");
        assert!(!m.is_ignored(".gitignore", false));
    }

    #[test]
    fn a_star_does_not_cross_directories() {
        let m = matcher("/*.txt");
        assert!(m.is_ignored("a.txt", false));
        assert!(!m.is_ignored("dir/a.txt", false));
    }
}
