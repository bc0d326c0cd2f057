//! `ingot help` grouped the way cf groups its commands, `ingot help NAME`,
//! shell completion scripts, and the "did you mean" answer to a typo.

use std::io::IsTerminal as _;

use anyhow::anyhow;
use clap::{Args, CommandFactory as _};

use super::plugins;

/// Exit status of a usage error: an unknown command, a bad flag (clap uses
/// the same), a missing argument.
pub(crate) const EXIT_USAGE: i32 = 2;

/// Flags of `help`.
#[derive(Args)]
pub struct HelpArgs {
    /// The command to explain (all commands when omitted).
    command: Option<String>,
}

/// Flags of `completion`.
#[derive(Args)]
pub struct CompletionArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

/// The groups of `ingot help`, in order, with their commands in order. A
/// visible command in no group is listed under "Other commands", so a new
/// command is never hidden by forgetting this table.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "Getting started",
        &["help", "up", "login", "logout", "target"],
    ),
    (
        "Apps",
        &[
            "apps",
            "app",
            "push",
            "scale",
            "start",
            "stop",
            "restart",
            "revisions",
            "rollback",
            "cancel-deployment",
            "delete",
            "copy-source",
            "env",
            "set-env",
            "run-task",
            "tasks",
            "terminate-task",
            "events",
            "ssh",
            "ssh-code",
            "enable-ssh",
            "disable-ssh",
            "ssh-enabled",
        ],
    ),
    (
        "Services",
        &[
            "marketplace",
            "services",
            "service",
            "create-service",
            "update-service",
            "delete-service",
            "create-user-provided-service",
            "update-user-provided-service",
            "bind-service",
            "unbind-service",
            "create-service-key",
            "service-keys",
            "service-key",
            "delete-service-key",
        ],
    ),
    (
        "Service admin",
        &[
            "service-brokers",
            "create-service-broker",
            "update-service-broker",
            "delete-service-broker",
            "service-access",
            "enable-service-access",
            "disable-service-access",
        ],
    ),
    (
        "Routes",
        &[
            "routes",
            "domains",
            "create-route",
            "map-route",
            "unmap-route",
            "delete-route",
        ],
    ),
    (
        "Orgs and spaces",
        &[
            "orgs",
            "spaces",
            "create-org",
            "create-space",
            "delete-org",
            "delete-space",
            "allow-space-ssh",
            "disallow-space-ssh",
        ],
    ),
    (
        "Users and roles",
        &[
            "create-user",
            "delete-user",
            "org-users",
            "space-users",
            "set-org-role",
            "unset-org-role",
            "set-space-role",
            "unset-space-role",
        ],
    ),
    (
        "Quotas",
        &[
            "org-quotas",
            "org-quota",
            "create-org-quota",
            "update-org-quota",
            "delete-org-quota",
            "set-org-quota",
            "space-quotas",
            "space-quota",
            "create-space-quota",
            "update-space-quota",
            "delete-space-quota",
            "set-space-quota",
            "unset-space-quota",
        ],
    ),
    (
        "Security groups",
        &[
            "security-groups",
            "security-group",
            "create-security-group",
            "update-security-group",
            "delete-security-group",
            "bind-security-group",
            "unbind-security-group",
            "bind-running-security-group",
            "bind-staging-security-group",
            "unbind-running-security-group",
            "unbind-staging-security-group",
            "running-security-groups",
            "staging-security-groups",
        ],
    ),
    (
        "Platform",
        &[
            "stacks",
            "stack",
            "buildpacks",
            "create-buildpack",
            "update-buildpack",
            "rename-buildpack",
            "delete-buildpack",
        ],
    ),
    ("Logs", &["logs", "firehose"]),
    (
        "Plugins",
        &["plugins", "install-plugin", "uninstall-plugin"],
    ),
    ("Advanced", &["curl", "completion"]),
];

/// The whole command tree of the binary (`up`, the CLI commands, …).
fn root() -> clap::Command {
    let mut cmd = crate::Args::command();
    cmd.build();
    cmd
}

/// Every built-in command name and alias, hidden ones included: a plugin of
/// such a name would never run.
pub(crate) fn builtin_names() -> Vec<String> {
    let mut names: Vec<String> = vec!["help".to_string()];
    for sc in root().get_subcommands() {
        names.push(sc.get_name().to_string());
        names.extend(sc.get_all_aliases().map(str::to_string));
    }
    names.sort();
    names.dedup();
    names
}

/// Whether to colour what goes to stdout: only on a terminal, never when
/// `NO_COLOR` is set (https://no-color.org).
pub(crate) fn colour_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The edit distance between two short strings.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known name closest to `typed`, if it is close enough to be a typo.
pub(crate) fn suggest<'a>(typed: &str, known: &'a [String]) -> Option<&'a str> {
    let limit = (typed.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (distance(typed, k), k))
        .filter(|(d, k)| *d <= limit || (typed.len() >= 3 && k.starts_with(typed)))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// The sentence for a command that is neither built in nor a plugin.
pub(crate) fn unknown_command(typed: &str, known: &[String]) -> String {
    match suggest(typed, known) {
        Some(s) => format!(
            "error: `{typed}` is not an ingot command or plugin; did you mean `ingot {s}`? (run `ingot help` to see all commands)"
        ),
        None => format!(
            "error: `{typed}` is not an ingot command or plugin: run `ingot help` to see all commands"
        ),
    }
}

/// The text of `ingot help`: commands grouped, then the plugins found.
pub(crate) fn grouped_help(colour: bool) -> String {
    let root = root();
    let visible: Vec<&clap::Command> = root
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        .collect();
    let about = |name: &str| -> Option<String> {
        if name == "help" {
            return Some("Show help for all commands, or for one".into());
        }
        visible
            .iter()
            .find(|c| c.get_name() == name)
            .map(|c| c.get_about().map(|a| a.to_string()).unwrap_or_default())
    };
    let heading = |s: &str| {
        if colour {
            format!("\x1b[1m{s}:\x1b[0m\n")
        } else {
            format!("{s}:\n")
        }
    };
    let line = |name: &str, text: &str| format!("   {name:<29} {}\n", text.trim_end_matches('.'));

    let mut out = format!(
        "ingot {} - a Cloud Foundry-compatible application platform\n\nUsage: ingot COMMAND [ARGS...]\n\n",
        env!("CARGO_PKG_VERSION")
    );
    let mut listed: Vec<&str> = Vec::new();
    for (group, names) in GROUPS {
        out.push_str(&heading(group));
        let mut any = false;
        for name in names.iter() {
            if let Some(text) = about(name) {
                out.push_str(&line(name, &text));
                listed.push(name);
                any = true;
            }
        }
        if !any {
            out.push_str("   (none yet)\n");
        }
        out.push('\n');
    }
    let others: Vec<&&clap::Command> = visible
        .iter()
        .filter(|c| !listed.contains(&c.get_name()))
        .collect();
    if !others.is_empty() {
        out.push_str(&heading("Other commands"));
        for c in others {
            let text = c.get_about().map(|a| a.to_string()).unwrap_or_default();
            out.push_str(&line(c.get_name(), &text));
        }
        out.push('\n');
    }
    let found = plugins::list_plugins(&plugins::current_search_dirs(), &builtin_names());
    if !found.is_empty() {
        out.push_str(&heading("Plugins found"));
        for p in found {
            out.push_str(&line(&p.name, &p.path.display().to_string()));
        }
        out.push('\n');
    }
    out.push_str(
        "Run `ingot help COMMAND` or `ingot COMMAND --help` for a command's flags and examples.\n\
         Global flags: -h/--help, -V/--version. Exit codes: 0 ok, 1 error, 2 usage error.\n",
    );
    out
}

/// `ingot help [COMMAND]`.
pub(crate) async fn help(args: HelpArgs) -> anyhow::Result<()> {
    let name = match args.command {
        Some(name) if name != "help" => name,
        _ => {
            super::print_help();
            return Ok(());
        }
    };
    let mut root = root();
    if let Some(sc) = root.find_subcommand_mut(&name) {
        sc.print_long_help()
            .map_err(|e| anyhow!("cannot print the help of {name}: {e}"))?;
        return Ok(());
    }
    // A plugin explains itself; an unknown name gets the typo answer.
    plugins::dispatch(vec![name, "--help".to_string()]).await
}

/// The completion script for `shell`, for the whole binary.
pub(crate) fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = crate::Args::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "ingot", &mut out);
    out
}

/// `ingot completion SHELL`.
pub(crate) fn completion(args: CompletionArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    std::io::stdout()
        .write_all(&completion_script(args.shell))
        .map_err(|e| anyhow!("cannot write the completion script: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        ["push", "apps", "app", "plugins", "logs", "login", "logout"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn typos_suggest_the_command_meant() {
        assert_eq!(suggest("pusj", &known()), Some("push"));
        assert_eq!(suggest("aps", &known()), Some("apps"));
        assert_eq!(suggest("plugin", &known()), Some("plugins"));
        assert_eq!(suggest("xyzzy", &known()), None);
        let msg = unknown_command("pusj", &known());
        assert!(msg.contains("did you mean `ingot push`"), "{msg}");
        assert!(msg.contains("`ingot help`"), "{msg}");
        let msg = unknown_command("xyzzy", &known());
        assert!(msg.contains("run `ingot help`"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn help_lists_every_visible_command_in_its_group() {
        let text = grouped_help(false);
        for heading in [
            "Getting started:",
            "Apps:",
            "Services:",
            "Routes:",
            "Orgs and spaces:",
            "Logs:",
            "Plugins:",
            "Advanced:",
        ] {
            assert!(text.contains(heading), "{heading} missing:\n{text}");
        }
        for c in root().get_subcommands().filter(|c| !c.is_hide_set()) {
            assert!(
                text.contains(&format!("   {} ", c.get_name())),
                "{} missing:\n{text}",
                c.get_name()
            );
        }
        let apps = text.find("Apps:").expect("apps");
        let push = text.find("   push ").expect("push");
        let orgs = text.find("Orgs and spaces:").expect("orgs");
        assert!(apps < push && push < orgs, "push not under Apps:\n{text}");
        assert!(!text.contains("\x1b["), "no colour when asked for none");
        assert!(grouped_help(true).contains("\x1b[1mApps:"));
        assert!(
            !text.contains("   lifecycle "),
            "hidden commands stay hidden"
        );
    }

    #[test]
    fn every_cli_command_has_an_example() {
        for c in root().get_subcommands() {
            if c.is_hide_set() || c.get_name() == "help" || c.get_name() == "up" {
                continue;
            }
            let after = c
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                after.contains("Examples:") && after.contains("ingot "),
                "{} has no examples",
                c.get_name()
            );
        }
    }

    #[test]
    fn completion_scripts_name_the_commands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let script = String::from_utf8(completion_script(shell)).expect("utf-8");
            for name in ["push", "install-plugin", "completion"] {
                assert!(script.contains(name), "{shell:?} script lacks {name}");
            }
        }
    }

    #[test]
    fn builtins_include_hidden_commands() {
        let names = builtin_names();
        for n in ["push", "up", "lifecycle", "help", "plugins"] {
            assert!(names.contains(&n.to_string()), "{n} missing");
        }
    }
}
