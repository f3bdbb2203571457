import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from contracts.transfers import SEARCH_ATTRIBUTES

_INDEXED_TYPES = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
}


@pytest.fixture(scope="session")
async def saga_env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    """The time-skipping test server with our custom search attributes registered.

    The test server refuses a start or an upsert that names a search attribute it does not
    know ("search attribute TransferStatus is not defined", the workflow task then fails
    forever), and `start_time_skipping` cannot declare any. Its OperatorService does accept
    AddSearchAttributes (ListSearchAttributes is unimplemented), so we register them as the
    launcher does on the dev server, and the workflow upserts them unconditionally, as in
    production.
    """
    await time_skipping_env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=time_skipping_env.client.namespace,
            search_attributes={
                name: _INDEXED_TYPES[kind] for name, kind in SEARCH_ATTRIBUTES.items()
            },
        )
    )
    return time_skipping_env
