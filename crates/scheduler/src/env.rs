//! The environment of app instances and staging tasks, built by the
//! lifecycle crate from what the scheduler knows about them.

use crate::cell::APP_PORT;
use crate::staging::StagingRequest;
use crate::{DesiredLrp, SchedulerConfig};

/// The instance's addresses are left empty here: the container's address is
/// allocated when it is created, and the launcher fills them in from inside.
pub(crate) fn instance_environment(
    config: &SchedulerConfig,
    lrp: &DesiredLrp,
    index: u32,
    instance_guid: &str,
) -> Vec<(String, String)> {
    instance_environment_on(config, lrp, index, instance_guid, APP_PORT)
}

/// [`instance_environment`] for an app listening on `port` (a docker
/// image's exposed port).
pub(crate) fn instance_environment_on(
    config: &SchedulerConfig,
    lrp: &DesiredLrp,
    index: u32,
    instance_guid: &str,
    port: u16,
) -> Vec<(String, String)> {
    ingot_lifecycle::instance_environment(&ingot_lifecycle::InstanceInfo {
        app_guid: lrp.app_guid.clone(),
        app_name: lrp.app_name.clone(),
        space_guid: lrp.space_guid.clone(),
        space_name: lrp.space_name.clone(),
        org_guid: lrp.org_guid.clone(),
        org_name: lrp.org_name.clone(),
        process_guid: lrp.process_guid.clone(),
        process_type: lrp.process_type.clone(),
        version: lrp.droplet_guid.clone(),
        instance_guid: instance_guid.to_string(),
        instance_index: index,
        port,
        memory_mb: lrp.memory_mb,
        disk_mb: lrp.disk_mb,
        uris: lrp.uris.clone(),
        cf_api: config.cf_api.clone(),
        user_env: lrp.environment.clone().into_iter().collect(),
        vcap_services: lrp.vcap_services.clone(),
        ..Default::default()
    })
}

pub(crate) fn staging_environment(
    config: &SchedulerConfig,
    request: &StagingRequest,
) -> Vec<(String, String)> {
    ingot_lifecycle::staging_environment(&ingot_lifecycle::StagingInfo {
        app_guid: request.app_guid.clone(),
        app_name: request.app_name.clone(),
        space_guid: request.space_guid.clone(),
        space_name: request.space_name.clone(),
        org_guid: request.org_guid.clone(),
        org_name: request.org_name.clone(),
        version: request.build_guid.clone(),
        stack: "cflinuxfs4".to_string(),
        memory_mb: request.memory_mb,
        disk_mb: request.disk_mb,
        cf_api: config.cf_api.clone(),
        user_env: request.environment.clone().into_iter().collect(),
        ..Default::default()
    })
}
