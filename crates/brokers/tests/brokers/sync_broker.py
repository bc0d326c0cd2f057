"""A synchronous OSB broker for the client tests: every call completes in its
response (201 provision and bind, 200 update, unbind and deprovision)."""

import threading

from openbrokerapi import errors
from openbrokerapi.catalog import ServicePlan
from openbrokerapi.service_broker import (
    Binding,
    BindState,
    DeprovisionServiceSpec,
    GetBindingSpec,
    LastOperation,
    OperationState,
    ProvisionedServiceSpec,
    ProvisionState,
    Service,
    ServiceBroker,
    UnbindSpec,
    UpdateServiceSpec,
)

import recording

SERVICE_ID = "sync-db-id"


class SyncBroker(ServiceBroker):
    def __init__(self):
        self.lock = threading.Lock()
        self.instances = {}  # id -> {"plan_id", "parameters"}
        self.bindings = {}  # (instance id, binding id) -> credentials

    def catalog(self):
        return Service(
            id=SERVICE_ID,
            name="sync-db",
            description="A database that is ready at once",
            bindable=True,
            plan_updateable=True,
            bindings_retrievable=True,
            instances_retrievable=True,
            tags=["sql", "sync"],
            plans=[
                ServicePlan(id="sync-small", name="small", description="Small", free=True),
                ServicePlan(
                    id="sync-large",
                    name="large",
                    description="Large",
                    free=False,
                    maintenance_info={"version": "2.1.0", "description": "newer engine"},
                ),
                ServicePlan(id="sync-fixed", name="fixed", description="Cannot change", plan_updateable=False),
            ],
        )

    def provision(self, instance_id, details, async_allowed, **kwargs):
        with self.lock:
            existing = self.instances.get(instance_id)
            if existing is not None:
                if existing["plan_id"] == details.plan_id:
                    return ProvisionedServiceSpec(state=ProvisionState.IDENTICAL_ALREADY_EXISTS)
                raise errors.ErrInstanceAlreadyExists()
            self.instances[instance_id] = {"plan_id": details.plan_id, "parameters": details.parameters}
        return ProvisionedServiceSpec(
            state=ProvisionState.SUCCESSFUL_CREATED,
            dashboard_url=f"http://dashboard.sync.test/{instance_id}",
        )

    def update(self, instance_id, details, async_allowed, **kwargs):
        with self.lock:
            instance = self.instances[instance_id]
            if details.plan_id:
                instance["plan_id"] = details.plan_id
            if details.parameters:
                instance["parameters"] = details.parameters
        return UpdateServiceSpec(is_async=False)

    def deprovision(self, instance_id, details, async_allowed, **kwargs):
        with self.lock:
            if self.instances.pop(instance_id, None) is None:
                raise errors.ErrInstanceDoesNotExist()
        return DeprovisionServiceSpec(is_async=False)

    def bind(self, instance_id, binding_id, details, async_allowed, **kwargs):
        credentials = {
            "uri": f"sync://user-{binding_id}:secret@db.sync.test/{instance_id}",
            "username": f"user-{binding_id}",
            "password": "secret",
        }
        with self.lock:
            if instance_id not in self.instances:
                raise errors.ErrBadRequest("no such instance")
            self.bindings[(instance_id, binding_id)] = credentials
        return Binding(state=BindState.SUCCESSFUL_BOUND, credentials=credentials)

    def get_binding(self, instance_id, binding_id, **kwargs):
        with self.lock:
            credentials = self.bindings.get((instance_id, binding_id))
        if credentials is None:
            raise errors.ErrBindingDoesNotExist()
        return GetBindingSpec(credentials=credentials)

    def unbind(self, instance_id, binding_id, details, async_allowed, **kwargs):
        with self.lock:
            if self.bindings.pop((instance_id, binding_id), None) is None:
                raise errors.ErrBindingDoesNotExist()
        return UnbindSpec(is_async=False)

    def last_operation(self, instance_id, operation_data, **kwargs):
        return LastOperation(OperationState.SUCCEEDED, "nothing is asynchronous here")


if __name__ == "__main__":
    recording.serve(SyncBroker())
