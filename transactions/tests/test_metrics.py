"""The transfer counters: one start per accepted transfer, one end per transfer on its
transition to a terminal status, however often the requests and reports arrive."""

import asyncio

import httpx
from prometheus_client import REGISTRY

from transactions.tests.support import create, key_header, report, transfer_body


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _started() -> float:
    return _sample("sagabank_transfers_started_total", currency="SEK")


def _ended(status: str) -> tuple[float, float]:
    return (
        _sample("sagabank_transfers_ended_total", status=status),
        _sample("sagabank_transfer_duration_seconds_count", status=status),
    )


class TestTransfersStarted:
    async def test_once_per_accepted_transfer_not_per_replay(
        self, client: httpx.AsyncClient
    ) -> None:
        before = _started()
        body, headers = transfer_body(currency="SEK"), key_header()

        responses = await asyncio.gather(
            *(client.post("/v1/transfers", json=body, headers=headers) for _ in range(5))
        )
        replay = await client.post("/v1/transfers", json=body, headers=headers)

        assert [response.status_code for response in [*responses, replay]] == [202] * 6
        assert _started() - before == 1


class TestTransfersEnded:
    async def test_once_on_the_transition_to_a_terminal_status(
        self, client: httpx.AsyncClient
    ) -> None:
        transfer = await create(client)
        before = _ended("completed")
        post = {"step": "post", "outcome": "succeeded", "status": "completed", "version": 5}
        notify = {"step": "notify", "outcome": "succeeded", "status": "completed", "version": 6}
        for fields in (
            {"step": "validate", "outcome": "succeeded", "status": "pending", "version": 1},
            post,
            post,  # a retried report
            notify,  # a later step of a transfer already completed
        ):
            response = await report(client, transfer["id"], **fields)
            assert response.status_code == 200, response.text

        after = _ended("completed")
        assert (after[0] - before[0], after[1] - before[1]) == (1, 1)

    async def test_racing_terminal_reports_count_once(self, client: httpx.AsyncClient) -> None:
        # Two replicas applying two reports of the same end at once: each sees the transfer
        # pending when it starts, yet only one of them moves it out of pending.
        transfers = [await create(client) for _ in range(5)]
        before = _ended("declined")

        responses = await asyncio.gather(
            *(
                report(
                    client,
                    transfer["id"],
                    step=step,
                    outcome="succeeded",
                    status="declined",
                    version=version,
                )
                for transfer in transfers
                for step, version in (("score", 3), ("notify", 4))
            )
        )

        assert [response.status_code for response in responses] == [200] * 10
        after = _ended("declined")
        assert (after[0] - before[0], after[1] - before[1]) == (5, 5)
