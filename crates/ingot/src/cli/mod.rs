//! The user-facing commands (`login`, `push`, `apps`, `logs`, …), with the
//! names and flags of the `cf` CLI. They speak only the Cloud Foundry v3 API,
//! through `ingot-client`; this module parses, prompts and prints.

mod apps;
mod auth;
mod buildpacks;
mod copy_source;
mod curl;
mod deploy;
mod firehose;
mod help;
mod logs;
mod marketplace;
mod plugins;
mod push;
mod quotas;
mod routes;
mod security_groups;
mod services;
mod ssh;
mod stacks;
mod tasks;
mod ui;
mod users;

use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use clap::{ArgMatches, Args, FromArgMatches, Subcommand};
use ingot_client::config::{config_path, Config, Target};
use ingot_client::quotas::QuotaKind;
use ingot_client::resources::{Organization, Space};
use ingot_client::security_groups::Lifecycle as SgLifecycle;
use ingot_client::{Client, ClientError};

/// Flags of a listing command.
#[derive(Args)]
pub struct ListArgs {
    /// Print machine-readable JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Every user-facing command, flattened into the binary's root command.
///
/// A wrapper rather than the derived enum itself because of plugins: the
/// derived `has_subcommand` of an enum with an external subcommand claims
/// every name, and clap asks flattened enums before the root's own
/// variants, so `ingot up` would be taken for a plugin. This one claims its
/// own commands and names the root does not know (plugins), nothing else.
pub struct Command(Action);

impl FromArgMatches for Command {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Action::from_arg_matches(matches).map(Command)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }
}

impl Subcommand for Command {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        Action::augment_subcommands(cmd)
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        Action::augment_subcommands_for_update(cmd)
    }

    fn has_subcommand(name: &str) -> bool {
        let ours = Action::augment_subcommands(clap::Command::new("ingot"));
        if ours.find_subcommand(name).is_some() {
            return true;
        }
        <crate::Args as clap::CommandFactory>::command()
            .find_subcommand(name)
            .is_none()
    }
}

/// The user-facing commands. The enum-level settings apply to the binary's
/// root command: `help` is ours (grouped like cf's) rather than clap's, and
/// any other word is tried as a plugin (`ingot-WORD` on PATH).
#[derive(Subcommand)]
#[command(disable_help_subcommand = true)]
pub enum Action {
    /// Show help for all commands, or for one.
    #[command(after_help = "Examples:\n  ingot help\n  ingot help push")]
    Help(help::HelpArgs),
    /// Log in to a platform and target an org and space.
    #[command(
        after_help = "Examples:\n  ingot login -a http://127.0.0.1:9000 -u admin -p admin\n  ingot login -a http://127.0.0.1:9000 -u admin -p admin -o my-org -s dev"
    )]
    Login(auth::LoginArgs),
    /// Forget the saved login.
    #[command(after_help = "Examples:\n  ingot logout")]
    Logout,
    /// Show or set the targeted org and space.
    #[command(
        after_help = "Examples:\n  ingot target\n  ingot target -o my-org -s dev\n  ingot target -s staging"
    )]
    Target(auth::TargetArgs),
    /// List the organizations.
    #[command(after_help = "Examples:\n  ingot orgs\n  ingot orgs --json")]
    Orgs(ListArgs),
    /// List the spaces of the targeted organization.
    #[command(after_help = "Examples:\n  ingot spaces\n  ingot spaces --json")]
    Spaces(ListArgs),
    /// Create an organization; you become its manager.
    #[command(
        name = "create-org",
        after_help = "Examples:\n  ingot create-org my-org\n  ingot target -o my-org"
    )]
    CreateOrg(users::CreateOrgArgs),
    /// Create a space; you become its manager and developer.
    #[command(
        name = "create-space",
        after_help = "Examples:\n  ingot create-space staging\n  ingot create-space staging -o my-org"
    )]
    CreateSpace(users::CreateSpaceArgs),
    /// Delete an organization with its spaces and apps (admins only).
    #[command(
        name = "delete-org",
        after_help = "Examples:\n  ingot delete-org my-org\n  ingot delete-org my-org -f"
    )]
    DeleteOrg(users::DeleteOrgArgs),
    /// Delete a space with its apps and routes.
    #[command(
        name = "delete-space",
        after_help = "Examples:\n  ingot delete-space staging\n  ingot delete-space staging -o my-org -f"
    )]
    DeleteSpace(users::DeleteSpaceArgs),
    /// Create a user who can log in (admins only).
    #[command(
        name = "create-user",
        after_help = "Examples:\n  ingot create-user alice 's3cret'\n  ingot set-space-role alice main dev SpaceDeveloper"
    )]
    CreateUser(users::CreateUserArgs),
    /// Delete a user and all their roles (admins only).
    #[command(
        name = "delete-user",
        after_help = "Examples:\n  ingot delete-user alice\n  ingot delete-user alice -f"
    )]
    DeleteUser(users::DeleteUserArgs),
    /// Give a user a role in an organization: OrgManager, BillingManager, OrgAuditor.
    #[command(
        name = "set-org-role",
        after_help = "Examples:\n  ingot set-org-role alice my-org OrgManager"
    )]
    SetOrgRole(users::OrgRoleArgs),
    /// Take an organization role from a user.
    #[command(
        name = "unset-org-role",
        after_help = "Examples:\n  ingot unset-org-role alice my-org OrgAuditor"
    )]
    UnsetOrgRole(users::OrgRoleArgs),
    /// Give a user a role in a space: SpaceManager, SpaceDeveloper, SpaceAuditor, SpaceSupporter.
    #[command(
        name = "set-space-role",
        after_help = "Examples:\n  ingot set-space-role alice my-org dev SpaceDeveloper"
    )]
    SetSpaceRole(users::SpaceRoleArgs),
    /// Take a space role from a user.
    #[command(
        name = "unset-space-role",
        after_help = "Examples:\n  ingot unset-space-role alice my-org dev SpaceDeveloper"
    )]
    UnsetSpaceRole(users::SpaceRoleArgs),
    /// List the users of an organization by role.
    #[command(
        name = "org-users",
        after_help = "Examples:\n  ingot org-users my-org\n  ingot org-users my-org --json"
    )]
    OrgUsers(users::OrgUsersArgs),
    /// List the users of a space by role.
    #[command(
        name = "space-users",
        after_help = "Examples:\n  ingot space-users my-org dev"
    )]
    SpaceUsers(users::SpaceUsersArgs),
    /// Push an app: upload its files, stage it, start it.
    #[command(
        after_help = "Examples:\n  ingot push my-app\n  ingot push my-app -p ./build -m 256M -i 2\n  ingot push -f manifest.yml"
    )]
    Push(push::PushArgs),
    /// List the apps of the targeted space.
    #[command(after_help = "Examples:\n  ingot apps\n  ingot apps --json | jq -r '.[].name'")]
    Apps(ListArgs),
    /// Show an app's state and its instances.
    #[command(after_help = "Examples:\n  ingot app my-app\n  ingot app my-app --json")]
    App(apps::ShowArgs),
    /// Change an app's instance count, memory or disk.
    #[command(
        after_help = "Examples:\n  ingot scale my-app -i 3\n  ingot scale my-app -m 512M -f\n  ingot scale my-app"
    )]
    Scale(apps::ScaleArgs),
    /// Start an app.
    #[command(after_help = "Examples:\n  ingot start my-app")]
    Start(apps::AppArgs),
    /// Stop an app.
    #[command(after_help = "Examples:\n  ingot stop my-app")]
    Stop(apps::AppArgs),
    /// Restart an app (`--strategy rolling`: without downtime).
    #[command(
        after_help = "Examples:\n  ingot restart my-app\n  ingot restart my-app --strategy rolling"
    )]
    Restart(deploy::RestartArgs),
    /// Go back to an earlier revision of an app, without downtime.
    #[command(
        disable_version_flag = true,
        after_help = "Examples:\n  ingot revisions my-app\n  ingot rollback my-app --version 2"
    )]
    Rollback(deploy::RollbackArgs),
    /// List an app's revisions (each deployed droplet, environment and command).
    #[command(after_help = "Examples:\n  ingot revisions my-app\n  ingot revisions my-app --json")]
    Revisions(deploy::RevisionsArgs),
    /// Stop a rolling deployment and go back to the previous version.
    #[command(
        name = "cancel-deployment",
        after_help = "Examples:\n  ingot cancel-deployment my-app"
    )]
    CancelDeployment(deploy::CancelArgs),
    /// Delete an app.
    #[command(after_help = "Examples:\n  ingot delete my-app\n  ingot delete my-app -f -r")]
    Delete(apps::DeleteArgs),
    /// Show an app's environment variables.
    #[command(after_help = "Examples:\n  ingot env my-app\n  ingot env my-app --json")]
    Env(apps::ShowArgs),
    /// Set one of an app's environment variables.
    #[command(
        name = "set-env",
        after_help = "Examples:\n  ingot set-env my-app GREETING hello\n  ingot restart my-app"
    )]
    SetEnv(apps::SetEnvArgs),
    /// Open a shell in an app instance, run a command there, or forward ports.
    #[command(
        after_help = "Examples:\n  ingot ssh my-app\n  ingot ssh my-app -i 1 -c 'echo $CF_INSTANCE_INDEX'\n  ingot ssh my-app -N -L 9000:localhost:9000"
    )]
    Ssh(ssh::SshArgs),
    /// Print a one-time code for `ssh cf:PROCESS_GUID/INDEX@HOST` (the password).
    #[command(
        name = "ssh-code",
        after_help = "Examples:\n  ingot ssh-code\n  sshpass -p $(ingot ssh-code) ssh -p 2222 cf:$(ingot curl /v3/apps/APP_GUID/processes/web | jq -r .guid)/0@127.0.0.1"
    )]
    SshCode,
    /// Allow SSH into an app (restart it to apply to running instances in CF; Ingot applies it at once).
    #[command(
        name = "enable-ssh",
        after_help = "Examples:\n  ingot enable-ssh my-app"
    )]
    EnableSsh(ssh::AppNameArgs),
    /// Refuse SSH into an app.
    #[command(
        name = "disable-ssh",
        after_help = "Examples:\n  ingot disable-ssh my-app"
    )]
    DisableSsh(ssh::AppNameArgs),
    /// Say whether SSH into an app is allowed, and why not.
    #[command(
        name = "ssh-enabled",
        after_help = "Examples:\n  ingot ssh-enabled my-app"
    )]
    SshEnabled(ssh::AppNameArgs),
    /// Allow SSH into the apps of a space.
    #[command(
        name = "allow-space-ssh",
        after_help = "Examples:\n  ingot allow-space-ssh dev"
    )]
    AllowSpaceSsh(ssh::SpaceNameArgs),
    /// Refuse SSH into every app of a space.
    #[command(
        name = "disallow-space-ssh",
        after_help = "Examples:\n  ingot disallow-space-ssh prod"
    )]
    DisallowSpaceSsh(ssh::SpaceNameArgs),
    /// List an app's audit events (starts, crashes, SSH sessions, …), newest first.
    #[command(after_help = "Examples:\n  ingot events my-app\n  ingot events my-app --json")]
    Events(ssh::EventsArgs),
    /// Create a user-provided service: credentials, a log drain, a route service.
    #[command(
        name = "create-user-provided-service",
        visible_alias = "cups",
        after_help = "Examples:\n  ingot cups my-db -p '{\"uri\":\"postgres://…\"}'\n  ingot cups my-drain -l syslog://logs.example.com:514\n  ingot bind-service my-app my-db"
    )]
    CreateUserProvidedService(services::UserProvidedArgs),
    /// Change a user-provided service.
    #[command(
        name = "update-user-provided-service",
        visible_alias = "uups",
        after_help = "Examples:\n  ingot uups my-db -p creds.json"
    )]
    UpdateUserProvidedService(services::UserProvidedArgs),
    /// List the services of the targeted space.
    #[command(
        visible_alias = "s",
        after_help = "Examples:\n  ingot services\n  ingot services --json"
    )]
    Services(ListArgs),
    /// Bind a service to an app (its credentials reach VCAP_SERVICES on restart).
    #[command(
        name = "bind-service",
        visible_alias = "bs",
        after_help = "Examples:\n  ingot bind-service my-app my-db\n  ingot restart my-app"
    )]
    BindService(services::BindArgs),
    /// Unbind a service from an app.
    #[command(
        name = "unbind-service",
        visible_alias = "us",
        after_help = "Examples:\n  ingot unbind-service my-app my-db"
    )]
    UnbindService(services::BindArgs),
    /// Delete a service instance (unbind it first).
    #[command(
        name = "delete-service",
        visible_alias = "ds",
        after_help = "Examples:\n  ingot delete-service my-db -f"
    )]
    DeleteService(services::DeleteServiceArgs),
    /// Create a managed service instance from a plan of the marketplace.
    #[command(
        name = "create-service",
        visible_alias = "cs",
        after_help = "Examples:\n  ingot marketplace\n  ingot create-service mysql small my-db\n  ingot create-service mysql small my-db -c '{\"storage\":10}' -t sql,prod --wait"
    )]
    CreateService(services::CreateServiceArgs),
    /// Change a managed service instance's plan, parameters or tags.
    #[command(
        name = "update-service",
        after_help = "Examples:\n  ingot update-service my-db -p large --wait\n  ingot update-service my-db -c params.json"
    )]
    UpdateService(services::UpdateServiceArgs),
    /// Show a service instance: its plan, last operation and bound apps.
    #[command(after_help = "Examples:\n  ingot service my-db\n  ingot service my-db --guid")]
    Service(services::ServiceArgs),
    /// Create a service key (credentials for use outside an app).
    #[command(
        name = "create-service-key",
        visible_alias = "csk",
        after_help = "Examples:\n  ingot create-service-key my-db ci-key\n  ingot create-service-key my-db ci-key -c '{\"role\":\"read-only\"}' --wait"
    )]
    CreateServiceKey(services::CreateKeyArgs),
    /// List the keys of a service instance.
    #[command(
        name = "service-keys",
        visible_alias = "sk",
        after_help = "Examples:\n  ingot service-keys my-db\n  ingot service-keys my-db --json"
    )]
    ServiceKeys(services::KeysArgs),
    /// Print a service key's credentials.
    #[command(
        name = "service-key",
        after_help = "Examples:\n  ingot service-key my-db ci-key\n  ingot service-key my-db ci-key | jq -r .uri"
    )]
    ServiceKey(services::KeyArgs),
    /// Delete a service key.
    #[command(
        name = "delete-service-key",
        visible_alias = "dsk",
        after_help = "Examples:\n  ingot delete-service-key my-db ci-key -f"
    )]
    DeleteServiceKey(services::DeleteKeyArgs),
    /// List the service offerings and plans you can create instances of.
    #[command(
        visible_alias = "m",
        after_help = "Examples:\n  ingot marketplace\n  ingot marketplace -e mysql\n  ingot marketplace -b my-broker --json"
    )]
    Marketplace(marketplace::MarketplaceArgs),
    /// Register a service broker (admins; space developers with --space-scoped).
    #[command(
        name = "create-service-broker",
        after_help = "Examples:\n  ingot create-service-broker my-broker admin s3cret https://broker.example.com\n  ingot create-service-broker my-broker admin s3cret http://127.0.0.1:9090 --space-scoped"
    )]
    CreateServiceBroker(marketplace::CreateBrokerArgs),
    /// List the service brokers.
    #[command(
        name = "service-brokers",
        after_help = "Examples:\n  ingot service-brokers\n  ingot service-brokers --json"
    )]
    ServiceBrokers(ListArgs),
    /// Change a service broker's URL and credentials, and read its catalog again.
    #[command(
        name = "update-service-broker",
        after_help = "Examples:\n  ingot update-service-broker my-broker admin n3w-s3cret https://broker.example.com"
    )]
    UpdateServiceBroker(marketplace::UpdateBrokerArgs),
    /// Remove a service broker and its offerings.
    #[command(
        name = "delete-service-broker",
        after_help = "Examples:\n  ingot delete-service-broker my-broker -f"
    )]
    DeleteServiceBroker(marketplace::DeleteBrokerArgs),
    /// List which orgs may use which service plans (admins).
    #[command(
        name = "service-access",
        after_help = "Examples:\n  ingot service-access\n  ingot service-access -e mysql -o my-org"
    )]
    ServiceAccess(marketplace::AccessListArgs),
    /// Let all orgs, or one, use a service offering's plans (admins).
    #[command(
        name = "enable-service-access",
        after_help = "Examples:\n  ingot enable-service-access mysql\n  ingot enable-service-access mysql -p small -o my-org"
    )]
    EnableServiceAccess(marketplace::AccessArgs),
    /// Stop all orgs, or one, from using a service offering's plans (admins).
    #[command(
        name = "disable-service-access",
        after_help = "Examples:\n  ingot disable-service-access mysql\n  ingot disable-service-access mysql -p small -o my-org"
    )]
    DisableServiceAccess(marketplace::AccessArgs),
    /// List the security groups and where they apply.
    #[command(
        name = "security-groups",
        after_help = "Examples:\n  ingot security-groups\n  ingot security-groups --json"
    )]
    SecurityGroups(ListArgs),
    /// Show a security group's rules and the spaces it applies to.
    #[command(
        name = "security-group",
        after_help = "Examples:\n  ingot security-group dns"
    )]
    SecurityGroup(security_groups::ShowArgs),
    /// Create a security group from a JSON file of rules (admins).
    #[command(
        name = "create-security-group",
        after_help = "Examples:\n  echo '[{\"protocol\":\"tcp\",\"destination\":\"10.0.0.0/24\",\"ports\":\"5432\"}]' > db.json\n  ingot create-security-group db db.json\n  ingot bind-security-group db my-org --space dev"
    )]
    CreateSecurityGroup(security_groups::RulesArgs),
    /// Replace a security group's rules with those of a JSON file (admins).
    #[command(
        name = "update-security-group",
        after_help = "Examples:\n  ingot update-security-group db db.json"
    )]
    UpdateSecurityGroup(security_groups::RulesArgs),
    /// Delete a security group (admins).
    #[command(
        name = "delete-security-group",
        after_help = "Examples:\n  ingot delete-security-group db -f"
    )]
    DeleteSecurityGroup(security_groups::DeleteArgs),
    /// Apply a security group to one space, or to every space of an org.
    #[command(
        name = "bind-security-group",
        after_help = "Examples:\n  ingot bind-security-group db my-org --space dev\n  ingot bind-security-group db my-org --lifecycle staging"
    )]
    BindSecurityGroup(security_groups::BindArgs),
    /// Stop applying a security group to a space.
    #[command(
        name = "unbind-security-group",
        after_help = "Examples:\n  ingot unbind-security-group db my-org dev\n  ingot unbind-security-group db my-org dev --lifecycle staging"
    )]
    UnbindSecurityGroup(security_groups::UnbindArgs),
    /// Apply a security group to running apps in every space (admins).
    #[command(
        name = "bind-running-security-group",
        after_help = "Examples:\n  ingot bind-running-security-group dns"
    )]
    BindRunningSecurityGroup(security_groups::GroupArgs),
    /// Apply a security group to staging in every space (admins).
    #[command(
        name = "bind-staging-security-group",
        after_help = "Examples:\n  ingot bind-staging-security-group public_networks"
    )]
    BindStagingSecurityGroup(security_groups::GroupArgs),
    /// Stop applying a security group to running apps everywhere (admins).
    #[command(
        name = "unbind-running-security-group",
        after_help = "Examples:\n  ingot unbind-running-security-group dns"
    )]
    UnbindRunningSecurityGroup(security_groups::GroupArgs),
    /// Stop applying a security group to staging everywhere (admins).
    #[command(
        name = "unbind-staging-security-group",
        after_help = "Examples:\n  ingot unbind-staging-security-group public_networks"
    )]
    UnbindStagingSecurityGroup(security_groups::GroupArgs),
    /// List the security groups applied to running apps everywhere.
    #[command(
        name = "running-security-groups",
        after_help = "Examples:\n  ingot running-security-groups"
    )]
    RunningSecurityGroups(ListArgs),
    /// List the security groups applied to staging everywhere.
    #[command(
        name = "staging-security-groups",
        after_help = "Examples:\n  ingot staging-security-groups"
    )]
    StagingSecurityGroups(ListArgs),
    /// List the organization quotas.
    #[command(
        name = "org-quotas",
        visible_alias = "quotas",
        after_help = "Examples:\n  ingot org-quotas\n  ingot quotas --json"
    )]
    OrgQuotas(ListArgs),
    /// Show an organization quota.
    #[command(
        name = "org-quota",
        visible_alias = "quota",
        after_help = "Examples:\n  ingot org-quota default"
    )]
    OrgQuota(quotas::ShowArgs),
    /// Create an organization quota (admins).
    #[command(
        name = "create-org-quota",
        visible_alias = "create-quota",
        after_help = "Examples:\n  ingot create-org-quota small -m 10G -i 1G -r 100 -s 10 -a 50\n  ingot create-org-quota big -m -1 --allow-paid-service-plans\n  ingot set-org-quota my-org small"
    )]
    CreateOrgQuota(quotas::CreateArgs),
    /// Change an organization quota (admins).
    #[command(
        name = "update-org-quota",
        visible_alias = "update-quota",
        after_help = "Examples:\n  ingot update-org-quota small -m 20G\n  ingot update-org-quota small -n medium -a -1"
    )]
    UpdateOrgQuota(quotas::UpdateArgs),
    /// Delete an organization quota (admins).
    #[command(
        name = "delete-org-quota",
        visible_alias = "delete-quota",
        after_help = "Examples:\n  ingot delete-org-quota small -f"
    )]
    DeleteOrgQuota(quotas::DeleteArgs),
    /// Apply an organization quota to an organization (admins).
    #[command(
        name = "set-org-quota",
        after_help = "Examples:\n  ingot set-org-quota my-org small"
    )]
    SetOrgQuota(quotas::SetOrgArgs),
    /// List the space quotas of the targeted organization.
    #[command(
        name = "space-quotas",
        after_help = "Examples:\n  ingot space-quotas\n  ingot space-quotas --json"
    )]
    SpaceQuotas(ListArgs),
    /// Show a space quota of the targeted organization.
    #[command(
        name = "space-quota",
        after_help = "Examples:\n  ingot space-quota dev-quota"
    )]
    SpaceQuota(quotas::ShowArgs),
    /// Create a space quota in the targeted organization.
    #[command(
        name = "create-space-quota",
        after_help = "Examples:\n  ingot create-space-quota dev-quota -m 2G -i 512M -a 10\n  ingot set-space-quota dev dev-quota"
    )]
    CreateSpaceQuota(quotas::CreateArgs),
    /// Change a space quota of the targeted organization.
    #[command(
        name = "update-space-quota",
        after_help = "Examples:\n  ingot update-space-quota dev-quota -m 4G\n  ingot update-space-quota dev-quota -r -1"
    )]
    UpdateSpaceQuota(quotas::UpdateArgs),
    /// Delete a space quota of the targeted organization.
    #[command(
        name = "delete-space-quota",
        after_help = "Examples:\n  ingot delete-space-quota dev-quota -f"
    )]
    DeleteSpaceQuota(quotas::DeleteArgs),
    /// Apply a space quota to a space of the targeted organization.
    #[command(
        name = "set-space-quota",
        after_help = "Examples:\n  ingot set-space-quota dev dev-quota"
    )]
    SetSpaceQuota(quotas::SpaceQuotaArgs),
    /// Remove a space quota from a space of the targeted organization.
    #[command(
        name = "unset-space-quota",
        after_help = "Examples:\n  ingot unset-space-quota dev dev-quota"
    )]
    UnsetSpaceQuota(quotas::SpaceQuotaArgs),
    /// List the stacks (root file systems) apps can run on.
    #[command(after_help = "Examples:\n  ingot stacks\n  ingot stacks --json")]
    Stacks(ListArgs),
    /// Show a stack.
    #[command(after_help = "Examples:\n  ingot stack cflinuxfs4\n  ingot stack cflinuxfs4 --guid")]
    Stack(stacks::StackArgs),
    /// List the admin buildpacks in detection order.
    #[command(after_help = "Examples:\n  ingot buildpacks\n  ingot buildpacks --json")]
    Buildpacks(ListArgs),
    /// Create an admin buildpack from a directory or a .zip file, at a place in detection order.
    #[command(
        name = "create-buildpack",
        after_help = "Examples:\n  ingot create-buildpack my-bp ./my-buildpack 1\n  ingot create-buildpack my-bp my-buildpack.zip 3 --disable"
    )]
    CreateBuildpack(buildpacks::CreateArgs),
    /// Change an admin buildpack: its bits, position, enabled, locked or name.
    #[command(
        name = "update-buildpack",
        after_help = "Examples:\n  ingot update-buildpack my-bp -i 1\n  ingot update-buildpack my-bp --disable\n  ingot update-buildpack my-bp -p ./my-buildpack --lock\n  ingot update-buildpack my-bp --rename new-bp"
    )]
    UpdateBuildpack(buildpacks::UpdateArgs),
    /// Rename an admin buildpack.
    #[command(
        name = "rename-buildpack",
        after_help = "Examples:\n  ingot rename-buildpack my-bp new-bp"
    )]
    RenameBuildpack(buildpacks::RenameArgs),
    /// Delete an admin buildpack.
    #[command(
        name = "delete-buildpack",
        after_help = "Examples:\n  ingot delete-buildpack my-bp\n  ingot delete-buildpack my-bp -f"
    )]
    DeleteBuildpack(buildpacks::DeleteArgs),
    /// Copy an app's source into another app (in any space you can write), then stage and restart it.
    #[command(
        name = "copy-source",
        after_help = "Examples:\n  ingot copy-source my-app my-app-prod\n  ingot copy-source my-app my-app -s prod\n  ingot copy-source my-app my-app -s prod -o other-org --strategy rolling\n  ingot copy-source my-app my-app-prod --no-restart"
    )]
    CopySource(copy_source::CopySourceArgs),
    /// Print (or forward as JSON lines) the whole stream of logs and metrics (needs doppler.firehose).
    #[command(
        after_help = "Examples:\n  ingot firehose\n  ingot firehose --types log -n 100\n  ingot firehose --json --shard-id archiver | my-archiver"
    )]
    Firehose(firehose::FirehoseArgs),
    /// List the domains.
    #[command(after_help = "Examples:\n  ingot domains\n  ingot domains --json")]
    Domains(ListArgs),
    /// List the routes of the targeted space and the apps they reach.
    #[command(after_help = "Examples:\n  ingot routes\n  ingot routes --json")]
    Routes(ListArgs),
    /// Create a route in the targeted space.
    #[command(
        name = "create-route",
        after_help = "Examples:\n  ingot create-route apps.localhost --hostname shop\n  ingot create-route apps.localhost --hostname shop --path /api"
    )]
    CreateRoute(routes::RouteArgs),
    /// Send a route's requests to an app (creating the route if needed).
    #[command(
        name = "map-route",
        after_help = "Examples:\n  ingot map-route my-app apps.localhost --hostname shop"
    )]
    MapRoute(routes::MapArgs),
    /// Stop sending a route's requests to an app.
    #[command(
        name = "unmap-route",
        after_help = "Examples:\n  ingot unmap-route my-app apps.localhost --hostname shop"
    )]
    UnmapRoute(routes::MapArgs),
    /// Delete a route.
    #[command(
        name = "delete-route",
        after_help = "Examples:\n  ingot delete-route apps.localhost --hostname shop -f"
    )]
    DeleteRoute(routes::DeleteRouteArgs),
    /// Show or follow an app's logs.
    #[command(after_help = "Examples:\n  ingot logs my-app\n  ingot logs my-app --recent")]
    Logs(logs::LogsArgs),
    /// Make an authenticated API request, as `cf curl` does.
    #[command(
        after_help = "Examples:\n  ingot curl /v3/apps\n  ingot curl -X POST /v3/spaces -d '{\"name\":\"dev\",\"relationships\":{\"organization\":{\"data\":{\"guid\":\"ORG_GUID\"}}}}'"
    )]
    Curl(curl::CurlArgs),
    /// List the plugins found on PATH and in the plugin directory.
    #[command(after_help = "Examples:\n  ingot plugins\n  ingot plugins --json")]
    Plugins(ListArgs),
    /// Install a plugin executable from a file or an http(s) URL.
    #[command(
        name = "install-plugin",
        after_help = "Examples:\n  ingot install-plugin ./ingot-hello\n  ingot install-plugin http://127.0.0.1:8000/ingot-hello -f\n  ingot install-plugin ./tool.sh --name tool"
    )]
    InstallPlugin(plugins::InstallArgs),
    /// Remove a plugin that `install-plugin` installed.
    #[command(
        name = "uninstall-plugin",
        after_help = "Examples:\n  ingot uninstall-plugin hello"
    )]
    UninstallPlugin(plugins::UninstallArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  ingot completion bash > /etc/bash_completion.d/ingot\n  ingot completion zsh > \"${fpath[1]}/_ingot\"\n  ingot completion fish > ~/.config/fish/completions/ingot.fish"
    )]
    Completion(help::CompletionArgs),
    /// Run a one-off task from an app's droplet.
    #[command(
        name = "run-task",
        after_help = "Examples:\n  ingot run-task my-app \"python migrate.py\" --name migrate\n  ingot run-task my-app \"echo hi\" -m 64M"
    )]
    RunTask(tasks::RunTaskArgs),
    /// List an app's tasks.
    #[command(after_help = "Examples:\n  ingot tasks my-app")]
    Tasks(tasks::TasksArgs),
    /// Cancel a running task, by the id `tasks` shows.
    #[command(
        name = "terminate-task",
        after_help = "Examples:\n  ingot terminate-task my-app 3"
    )]
    TerminateTask(tasks::TerminateTaskArgs),
    /// A plugin: `ingot NAME ARGS…` runs `ingot-NAME ARGS…`.
    #[command(external_subcommand)]
    External(Vec<String>),
}

/// Runs one user-facing command.
pub async fn run(command: Command) -> anyhow::Result<()> {
    use Action as A;
    match command.0 {
        A::Help(args) => help::help(args).await,
        A::Login(args) => auth::login(args).await,
        A::Logout => auth::logout(),
        A::Target(args) => auth::target(args).await,
        A::Orgs(args) => auth::orgs(args).await,
        A::Spaces(args) => auth::spaces(args).await,
        A::CreateOrg(args) => users::create_org(args).await,
        A::CreateSpace(args) => users::create_space(args).await,
        A::DeleteOrg(args) => users::delete_org(args).await,
        A::DeleteSpace(args) => users::delete_space(args).await,
        A::CreateUser(args) => users::create_user(args).await,
        A::DeleteUser(args) => users::delete_user(args).await,
        A::SetOrgRole(args) => users::set_org_role(args).await,
        A::UnsetOrgRole(args) => users::unset_org_role(args).await,
        A::SetSpaceRole(args) => users::set_space_role(args).await,
        A::UnsetSpaceRole(args) => users::unset_space_role(args).await,
        A::OrgUsers(args) => users::org_users(args).await,
        A::SpaceUsers(args) => users::space_users(args).await,
        A::Push(args) => push::push(args).await,
        A::Apps(args) => apps::apps(args).await,
        A::App(args) => apps::app(args).await,
        A::Scale(args) => apps::scale(args).await,
        A::Start(args) => apps::start(args).await,
        A::Stop(args) => apps::stop(args).await,
        A::Restart(args) => match args.strategy {
            Some(deploy::Strategy::Rolling) => deploy::rolling_restart(&args.name).await,
            _ => apps::restart(apps::AppArgs::named(args.name)).await,
        },
        A::Rollback(args) => deploy::rollback(args).await,
        A::Revisions(args) => deploy::revisions(args).await,
        A::CancelDeployment(args) => deploy::cancel_deployment(args).await,
        A::Delete(args) => apps::delete(args).await,
        A::Env(args) => apps::env(args).await,
        A::SetEnv(args) => apps::set_env(args).await,
        A::Logs(args) => logs::logs(args).await,
        A::Domains(args) => routes::domains(args).await,
        A::Routes(args) => routes::routes(args).await,
        A::CreateRoute(args) => routes::create_route(args).await,
        A::MapRoute(args) => routes::map_route(args).await,
        A::UnmapRoute(args) => routes::unmap_route(args).await,
        A::DeleteRoute(args) => routes::delete_route(args).await,
        A::Firehose(args) => firehose::firehose(args).await,
        A::CreateUserProvidedService(args) => services::create_user_provided(args).await,
        A::UpdateUserProvidedService(args) => services::update_user_provided(args).await,
        A::Services(args) => services::services(args).await,
        A::BindService(args) => services::bind_service(args).await,
        A::UnbindService(args) => services::unbind_service(args).await,
        A::DeleteService(args) => services::delete_service(args).await,
        A::CreateService(args) => services::create_service(args).await,
        A::UpdateService(args) => services::update_service(args).await,
        A::Service(args) => services::service(args).await,
        A::CreateServiceKey(args) => services::create_service_key(args).await,
        A::ServiceKeys(args) => services::service_keys(args).await,
        A::ServiceKey(args) => services::service_key(args).await,
        A::DeleteServiceKey(args) => services::delete_service_key(args).await,
        A::Marketplace(args) => marketplace::marketplace(args).await,
        A::CreateServiceBroker(args) => marketplace::create_service_broker(args).await,
        A::ServiceBrokers(args) => marketplace::service_brokers(args).await,
        A::UpdateServiceBroker(args) => marketplace::update_service_broker(args).await,
        A::DeleteServiceBroker(args) => marketplace::delete_service_broker(args).await,
        A::ServiceAccess(args) => marketplace::service_access(args).await,
        A::EnableServiceAccess(args) => marketplace::enable_service_access(args).await,
        A::DisableServiceAccess(args) => marketplace::disable_service_access(args).await,
        A::SecurityGroups(args) => security_groups::security_groups(args).await,
        A::SecurityGroup(args) => security_groups::security_group(args).await,
        A::CreateSecurityGroup(args) => security_groups::create_security_group(args).await,
        A::UpdateSecurityGroup(args) => security_groups::update_security_group(args).await,
        A::DeleteSecurityGroup(args) => security_groups::delete_security_group(args).await,
        A::BindSecurityGroup(args) => security_groups::bind_security_group(args).await,
        A::UnbindSecurityGroup(args) => security_groups::unbind_security_group(args).await,
        A::BindRunningSecurityGroup(args) => {
            security_groups::set_global(args, SgLifecycle::Running, true).await
        }
        A::BindStagingSecurityGroup(args) => {
            security_groups::set_global(args, SgLifecycle::Staging, true).await
        }
        A::UnbindRunningSecurityGroup(args) => {
            security_groups::set_global(args, SgLifecycle::Running, false).await
        }
        A::UnbindStagingSecurityGroup(args) => {
            security_groups::set_global(args, SgLifecycle::Staging, false).await
        }
        A::RunningSecurityGroups(args) => {
            security_groups::global_groups(args, SgLifecycle::Running).await
        }
        A::StagingSecurityGroups(args) => {
            security_groups::global_groups(args, SgLifecycle::Staging).await
        }
        A::OrgQuotas(args) => quotas::list(args, QuotaKind::Org).await,
        A::OrgQuota(args) => quotas::show(args, QuotaKind::Org).await,
        A::CreateOrgQuota(args) => quotas::create(args, QuotaKind::Org).await,
        A::UpdateOrgQuota(args) => quotas::update(args, QuotaKind::Org).await,
        A::DeleteOrgQuota(args) => quotas::delete(args, QuotaKind::Org).await,
        A::SetOrgQuota(args) => quotas::set_org_quota(args).await,
        A::SpaceQuotas(args) => quotas::list(args, QuotaKind::Space).await,
        A::SpaceQuota(args) => quotas::show(args, QuotaKind::Space).await,
        A::CreateSpaceQuota(args) => quotas::create(args, QuotaKind::Space).await,
        A::UpdateSpaceQuota(args) => quotas::update(args, QuotaKind::Space).await,
        A::DeleteSpaceQuota(args) => quotas::delete(args, QuotaKind::Space).await,
        A::SetSpaceQuota(args) => quotas::set_space_quota(args, true).await,
        A::UnsetSpaceQuota(args) => quotas::set_space_quota(args, false).await,
        A::Stacks(args) => stacks::stacks(args).await,
        A::Stack(args) => stacks::stack(args).await,
        A::Buildpacks(args) => stacks::buildpacks(args).await,
        A::CreateBuildpack(args) => buildpacks::create(args).await,
        A::UpdateBuildpack(args) => buildpacks::update(args).await,
        A::RenameBuildpack(args) => buildpacks::rename(args).await,
        A::DeleteBuildpack(args) => buildpacks::delete(args).await,
        A::CopySource(args) => copy_source::copy_source(args).await,
        A::Ssh(args) => ssh::ssh(args).await,
        A::SshCode => ssh::ssh_code().await,
        A::EnableSsh(args) => ssh::enable_ssh(args).await,
        A::DisableSsh(args) => ssh::disable_ssh(args).await,
        A::SshEnabled(args) => ssh::ssh_enabled(args).await,
        A::AllowSpaceSsh(args) => ssh::allow_space_ssh(args).await,
        A::DisallowSpaceSsh(args) => ssh::disallow_space_ssh(args).await,
        A::Events(args) => ssh::events(args).await,
        A::RunTask(args) => tasks::run_task(args).await,
        A::Tasks(args) => tasks::tasks(args).await,
        A::TerminateTask(args) => tasks::terminate_task(args).await,
        A::Curl(args) => curl::curl(args).await,
        A::Plugins(args) => plugins::plugins(args),
        A::InstallPlugin(args) => plugins::install(args).await,
        A::UninstallPlugin(args) => plugins::uninstall(args),
        A::Completion(args) => help::completion(args),
        A::External(argv) => plugins::dispatch(argv).await,
    }
}

/// When `ssh` runs this binary as its `SSH_ASKPASS` (see `ingot ssh`),
/// the one-time code to answer its password prompt with.
pub fn askpass_answer() -> Option<String> {
    std::env::var(ssh::ASKPASS_CODE).ok()
}

/// Prints `ingot help`: every command grouped by topic, then the plugins
/// found. `main` may call it for a bare `ingot` or `ingot --help` too.
pub fn print_help() {
    print!("{}", help::grouped_help(help::colour_stdout()));
}

/// Logs the local CLI in to a platform that has just booted: logs in,
/// targets the first org and space (by name), and saves the configuration
/// where `ingot` commands read it.
pub async fn login_local(api_url: &str, username: &str, password: &str) -> anyhow::Result<()> {
    let config = Config::login_first_target(api_url, username, password)
        .await
        .map_err(|e| anyhow!("cannot log the CLI in to {api_url} as {username}: {e}"))?;
    let path = config_path();
    config
        .save(&path)
        .with_context(|| format!("cannot save the CLI configuration to {}", path.display()))
}

/// Remembers where the platform's router listens (e.g. `http://127.0.0.1:8080`)
/// so that `push` and `app` show routes as URLs through it. `ingot up` calls
/// this after [`login_local`].
pub fn remember_router(router_url: &str) -> anyhow::Result<()> {
    let path = config_path();
    let mut config = Config::load(&path)?;
    config.router_url = Some(router_url.to_string());
    config
        .save(&path)
        .with_context(|| format!("cannot save the CLI configuration to {}", path.display()))
}

/// A logged-in CLI: the saved configuration and a client for it.
pub(crate) struct Session {
    path: PathBuf,
    config: Config,
    client: Client,
}

impl Session {
    /// Opens the saved login; fails with what to run when there is none.
    pub(crate) fn open() -> anyhow::Result<Session> {
        let path = config_path();
        let config = Config::load(&path)?;
        let client = match (&config.tokens, config.client()) {
            (Some(_), Some(client)) => client,
            _ => return Err(anyhow!("not logged in: run `ingot login -a API_URL`")),
        };
        Ok(Session {
            path,
            config,
            client,
        })
    }

    /// The client.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The user name shown in messages.
    pub(crate) fn user(&self) -> String {
        self.config
            .user
            .clone()
            .or_else(|| self.client.tokens().and_then(|t| t.user_name()))
            .unwrap_or_else(|| "(unknown user)".into())
    }

    /// The targeted org and space; fails with what to run when unset.
    pub(crate) fn target(&self) -> anyhow::Result<(Target, Target)> {
        match (&self.config.org, &self.config.space) {
            (Some(o), Some(s)) => Ok((o.clone(), s.clone())),
            (None, _) => Err(anyhow!(
                "no org and space targeted: run `ingot target -o ORG -s SPACE`"
            )),
            (Some(_), None) => Err(anyhow!("no space targeted: run `ingot target -s SPACE`")),
        }
    }

    /// Saves the configuration, with tokens refreshed during the command.
    pub(crate) fn save(&mut self) -> anyhow::Result<()> {
        let tokens = self.client.tokens();
        if tokens != self.config.tokens {
            self.config.tokens = tokens;
        }
        self.config.save(&self.path).with_context(|| {
            format!(
                "cannot save the CLI configuration to {}",
                self.path.display()
            )
        })
    }

    /// Saves tokens refreshed during the command, if any changed. Failing to
    /// save them is not worth failing the command over: the next command
    /// refreshes again.
    pub(crate) fn keep_tokens(&mut self) {
        if self.client.tokens() != self.config.tokens {
            let _ = self.save();
        }
    }

    /// A route as the URL to open (through the router, when known).
    pub(crate) fn route_link(&self, route: &str) -> String {
        self.config.route_link(route)
    }

    /// Mutable access to the configuration (for `target`).
    pub(crate) fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}

/// Turns a client error into the one sentence the user reads: what failed,
/// why, and, when it helps, the command to run next.
pub(crate) fn explain(what: impl std::fmt::Display, err: ClientError) -> anyhow::Error {
    if err.needs_login() {
        return anyhow!("{what}: {err}; your login has expired or is not valid: run `ingot login`");
    }
    if let ClientError::Transport { .. } = err {
        return anyhow!("{what}: {err}; is the platform running (`ingot up`)?");
    }
    anyhow!("{what}: {err}")
}

/// `result.or_explain("what")`: [`explain`] as a method.
pub(crate) trait OrExplain<T> {
    /// Maps the error through [`explain`].
    fn or_explain(self, what: impl std::fmt::Display) -> anyhow::Result<T>;
}

impl<T> OrExplain<T> for Result<T, ClientError> {
    fn or_explain(self, what: impl std::fmt::Display) -> anyhow::Result<T> {
        self.map_err(|e| explain(what, e))
    }
}

/// Finds an app by name in the targeted space, or says it does not exist.
pub(crate) async fn find_app(
    session: &Session,
    space: &Target,
    name: &str,
) -> anyhow::Result<ingot_client::resources::App> {
    session
        .client()
        .app_by_name(&space.guid, name)
        .await
        .or_explain(format!("cannot look up app {name}"))?
        .ok_or_else(|| {
            anyhow!(
                "app {name} not found in space {}: run `ingot apps` to see the apps there",
                space.name
            )
        })
}

/// Finds an organization by name, or says it does not exist.
pub(crate) async fn find_org_named(session: &Session, name: &str) -> anyhow::Result<Organization> {
    session
        .client()
        .organizations(Some(name))
        .await
        .or_explain(format!("cannot look up org {name}"))?
        .into_iter()
        .find(|o| o.name == name)
        .ok_or_else(|| {
            anyhow!("org {name} not found: run `ingot orgs` to see the orgs you can see")
        })
}

/// Finds a space of an organization by name, or says it does not exist.
pub(crate) async fn find_space_in(
    session: &Session,
    org: &Organization,
    name: &str,
) -> anyhow::Result<Space> {
    session
        .client()
        .spaces(&org.guid, Some(name))
        .await
        .or_explain(format!("cannot look up space {name}"))?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            anyhow!(
                "space {name} not found in org {}: run `ingot spaces` to see the spaces",
                org.name
            )
        })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::Action;

    fn parse(argv: &[&str]) -> Result<crate::Args, clap::Error> {
        crate::Args::try_parse_from(argv)
    }

    #[test]
    fn every_command_is_well_formed() {
        // clap checks a command's flags only when it is parsed; this checks
        // every one of them (a flag clashing with --version, …).
        <crate::Args as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn unknown_words_become_plugin_invocations_with_all_their_arguments() {
        let args = parse(&["ingot", "hello", "a", "--flag", "-x"]).expect("parses");
        match args.command {
            crate::Command::Cli(super::Command(Action::External(argv))) => {
                assert_eq!(argv, vec!["hello", "a", "--flag", "-x"]);
            }
            _ => panic!("not dispatched as a plugin"),
        }
    }

    #[test]
    fn help_and_listing_flags_parse() {
        let args = parse(&["ingot", "help", "push"]).expect("parses");
        assert!(matches!(
            args.command,
            crate::Command::Cli(super::Command(Action::Help(_)))
        ));
        for listing in ["apps", "orgs", "spaces", "plugins"] {
            let args = parse(&["ingot", listing, "--json"]).expect("parses");
            match args.command {
                crate::Command::Cli(super::Command(
                    Action::Apps(l) | Action::Orgs(l) | Action::Spaces(l) | Action::Plugins(l),
                )) => assert!(l.json, "{listing}"),
                _ => panic!("{listing} is not a listing"),
            }
        }
        parse(&["ingot", "app", "my-app", "--json"]).expect("app --json");
        // The root's own commands stay its own, whatever plugins exist.
        assert!(matches!(
            parse(&["ingot", "up"]).expect("up").command,
            crate::Command::Up(_)
        ));
        assert!(matches!(
            parse(&["ingot", "lifecycle", "builder", "--x"])
                .expect("lifecycle")
                .command,
            crate::Command::Lifecycle { .. }
        ));
        parse(&["ingot", "env", "my-app", "--json"]).expect("env --json");
        parse(&["ingot", "rollback", "my-app", "--version", "2"]).expect("rollback --version N");
        parse(&["ingot", "scale", "my-app", "-l", "-1"]).expect("scale -l -1");
        parse(&["ingot", "completion", "fish"]).expect("completion");
        let err = parse(&["ingot", "completion", "tcsh"])
            .err()
            .expect("an unknown shell is refused");
        assert_eq!(err.exit_code(), super::help::EXIT_USAGE);
    }
}
