"""An asynchronous OSB broker for the client tests: provision, update, bind,
unbind and deprovision answer 202 with an operation; each operation is
"in progress" at its first poll and done at the second (a deleted instance
then answers 410 Gone). last_operation answers carry Retry-After: 2."""

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

SERVICE_ID = "async-db-id"


class AsyncBroker(ServiceBroker):
    def __init__(self):
        self.lock = threading.Lock()
        self.instances = {}  # id -> {"plan_id", "ready", "op", "polls", "pending_plan"}
        self.bindings = {}  # (instance id, binding id) -> {"ready", "op", "polls", "credentials"}

    def catalog(self):
        return Service(
            id=SERVICE_ID,
            name="async-db",
            description="A database that takes a while",
            bindable=True,
            plan_updateable=True,
            bindings_retrievable=True,
            plans=[
                ServicePlan(id="async-standard", name="standard", description="Standard"),
                ServicePlan(id="async-premium", name="premium", description="Premium", maximum_polling_duration=60),
            ],
        )

    def _require_async(self, async_allowed):
        if not async_allowed:
            raise errors.ErrAsyncRequired()

    def provision(self, instance_id, details, async_allowed, **kwargs):
        self._require_async(async_allowed)
        op = f"provision-{instance_id}"
        with self.lock:
            self.instances[instance_id] = {"plan_id": details.plan_id, "op": op, "polls": 0}
        return ProvisionedServiceSpec(
            state=ProvisionState.IS_ASYNC,
            operation=op,
            dashboard_url=f"http://dashboard.async.test/{instance_id}",
        )

    def update(self, instance_id, details, async_allowed, **kwargs):
        self._require_async(async_allowed)
        op = f"update-{instance_id}-to-{details.plan_id}"
        with self.lock:
            instance = self.instances[instance_id]
            instance.update({"op": op, "polls": 0, "pending_plan": details.plan_id})
        return UpdateServiceSpec(is_async=True, operation=op)

    def deprovision(self, instance_id, details, async_allowed, **kwargs):
        self._require_async(async_allowed)
        op = f"deprovision-{instance_id}"
        with self.lock:
            instance = self.instances.get(instance_id)
            if instance is None:
                raise errors.ErrInstanceDoesNotExist()
            instance.update({"op": op, "polls": 0})
        return DeprovisionServiceSpec(is_async=True, operation=op)

    def last_operation(self, instance_id, operation_data, **kwargs):
        with self.lock:
            instance = self.instances.get(instance_id)
            if instance is None:
                raise errors.ErrInstanceDoesNotExist()
            if operation_data != instance["op"]:
                return LastOperation(OperationState.FAILED, f"unknown operation {operation_data!r}")
            instance["polls"] += 1
            if instance["polls"] == 1:
                return LastOperation(OperationState.IN_PROGRESS, f"{instance['op']}: 50% done")
            if instance["op"].startswith("deprovision-"):
                del self.instances[instance_id]
                raise errors.ErrInstanceDoesNotExist()
            if instance.get("pending_plan"):
                instance["plan_id"] = instance.pop("pending_plan")
            return LastOperation(OperationState.SUCCEEDED, f"{instance['op']}: done")

    def bind(self, instance_id, binding_id, details, async_allowed, **kwargs):
        self._require_async(async_allowed)
        op = f"bind-{binding_id}"
        with self.lock:
            self.bindings[(instance_id, binding_id)] = {
                "op": op,
                "polls": 0,
                "ready": False,
                "credentials": {"uri": f"async://{binding_id}@db.async.test/{instance_id}", "password": "p4ss"},
            }
        return Binding(state=BindState.IS_ASYNC, operation=op)

    def unbind(self, instance_id, binding_id, details, async_allowed, **kwargs):
        self._require_async(async_allowed)
        op = f"unbind-{binding_id}"
        with self.lock:
            binding = self.bindings.get((instance_id, binding_id))
            if binding is None:
                raise errors.ErrBindingDoesNotExist()
            binding.update({"op": op, "polls": 0, "ready": False})
        return UnbindSpec(is_async=True, operation=op)

    def last_binding_operation(self, instance_id, binding_id, operation_data, **kwargs):
        with self.lock:
            binding = self.bindings.get((instance_id, binding_id))
            if binding is None or operation_data != binding["op"]:
                return LastOperation(OperationState.FAILED, f"unknown operation {operation_data!r}")
            binding["polls"] += 1
            if binding["polls"] == 1:
                return LastOperation(OperationState.IN_PROGRESS, f"{binding['op']}: working")
            if binding["op"].startswith("unbind-"):
                del self.bindings[(instance_id, binding_id)]
            else:
                binding["ready"] = True
            return LastOperation(OperationState.SUCCEEDED, f"{binding['op']}: done")

    def get_binding(self, instance_id, binding_id, **kwargs):
        with self.lock:
            binding = self.bindings.get((instance_id, binding_id))
            if binding is None or not binding["ready"]:
                raise errors.ErrBindingDoesNotExist()
            return GetBindingSpec(credentials=binding["credentials"])


if __name__ == "__main__":
    recording.serve(AsyncBroker(), retry_after_seconds=2)
