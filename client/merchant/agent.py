"""The merchant agent (issue 16): one asyncio process that runs a shop unattended.

It follows the node's event stream for the merchant's key from a persisted cursor and, for
every order event of its shops, first hands the event to the webhook outbox (durably), then
acts on the order's current state (decisions.py: accept, deliver from the codes, reject when
they run out, leave for a person), then persists the cursor past the event: at-least-once.
On start, on every `gap` and on every reconnect (a node restart) it reconciles from the
chain: every open order of the merchant is looked at again, and after a gap the state
changes in the orders' histories above the cursor are handed to the outbox with the ids
their stream events had. The chain is the source of truth: reserved codes are settled by
what the chain shows about their order (`recover`).

Memory is bounded: one event is handled at a time (no queue), the node's lists are read a
page at a time, and the sets kept (orders already logged as left for a person, deadline
warnings given) are capped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from client import payloads
from client.events import NodeEvent
from client.merchant import chain
from client.merchant.config import MerchantConfig
from client.merchant.crash_points import CrashPoints
from client.merchant.cursor import Cursor
from client.merchant.deadline_warnings import DeadlineWarnings
from client.merchant.decisions import (
    OPEN_STATES,
    OUT_OF_STOCK_REASON,
    decide,
    delivery_text,
    is_mine,
)
from client.merchant.events import change_from_stream, changes_from_history
from client.merchant.inventory import Inventory
from client.merchant.inventory_crypto import InventoryError
from client.merchant.stream import StreamError, read_events
from client.node_client import ClientError, NodeClient
from client.sealing import MAX_CONTENT_BYTES, SealError, seal_content
from client.verification import VerificationFailed, verify_order_placement
from marketplace_tx.primitives.crypto import KeyPair

log = logging.getLogger("marketchain.merchant")

RECONNECT_S = 1.0
"""Pause before reconnecting to the node after the stream ended or failed."""

TICK_S = 5.0
"""How often, while the stream is quiet, the agent retries failed actions and checks deadlines."""

DEADLINE_CHECK_S = 30.0
"""How often accepted parcel orders are checked against `warn_before_ms`."""

MAX_LEFT_REMEMBERED = 10_000
"""Orders remembered as "left for a person" (logged once each); the set is emptied when full."""


class MerchantAgent:
    """Runs the shops of one merchant key per a `MerchantConfig`."""

    def __init__(self, config: MerchantConfig, key: KeyPair, inventory: Inventory | None, outbox: Any = None,
                 crash_points: CrashPoints | None = None, key_lock: Path | None = None) -> None:
        """An agent signing with `key`; `inventory` holds the codes (None: no digital delivery),
        `outbox` is a `WebhookOutbox` (None: no webhooks)."""
        self.config = config
        """What to do."""
        self.key = key
        """The merchant's signing key."""
        self.inventory = inventory
        """The codes, or None."""
        self.outbox = outbox
        """The webhook outbox, or None."""
        self.crash_points = crash_points or CrashPoints(config.state_dir, {})
        """Test crash points (docs/faults.md)."""
        self.key_lock = key_lock
        """The key's nonce lock file (client/nonces.py), if any."""
        self.client = NodeClient(config.node_url)
        """The node's HTTP API (blocking calls run in a thread)."""
        self.cursor = Cursor(config.state_dir)
        """The persisted stream position."""
        self.warnings = DeadlineWarnings(config.state_dir)
        """Deadline warnings already given."""
        self._left: set[str] = set()
        self._retry = False
        self._last_deadline_check = 0.0

    async def _call(self, function: Any, *arguments: Any) -> Any:
        return await asyncio.to_thread(function, *arguments)

    # --- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the node until `stop` is set; the step under way is finished first."""
        log.info("merchant agent for %s: node %s, state in %s", self.key.address.hex(), self.config.node_url,
                 self.config.state_dir)
        outbox_task = asyncio.create_task(self.outbox.run(stop)) if self.outbox is not None else None
        try:
            async with aiohttp.ClientSession() as session:
                first = True
                while not stop.is_set():
                    try:
                        if self.cursor.last_event_id is None:
                            await self._start_cursor()
                        await self._reconcile(recover=first)
                        first = False
                        await self._follow(session, stop)
                    except (StreamError, ClientError) as error:
                        log.warning("node: %s; reconnecting", error)
                    if not stop.is_set():
                        try:
                            await asyncio.wait_for(stop.wait(), RECONNECT_S)
                        except TimeoutError:
                            pass
        finally:
            if outbox_task is not None:
                await outbox_task
        log.info("merchant agent stopped")

    async def _start_cursor(self) -> None:
        """On the very first start, anchor the cursor at the node's current block before acting
        on open orders, so that every change from then on (the agent's own first accepts and
        deliveries included) comes through the stream and reaches the webhooks."""
        status = await self._call(self.client.status)
        self.cursor.advance(f"{int(status['height'])}:0")
        log.info("first start: following events from block %d on", int(status["height"]))

    async def _follow(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        events = read_events(session, self.config.node_url, self.key.address, self.cursor.last_event_id)
        stopping = asyncio.ensure_future(stop.wait())
        upcoming: asyncio.Future[NodeEvent] | None = None
        try:
            while True:
                upcoming = asyncio.ensure_future(anext(events))
                while not upcoming.done():
                    await asyncio.wait({upcoming, stopping}, timeout=TICK_S, return_when=asyncio.FIRST_COMPLETED)
                    if stop.is_set() and not upcoming.done():
                        return
                    if not upcoming.done():
                        await self._tick()
                try:
                    event = upcoming.result()
                except StopAsyncIteration:
                    return
                await self._handle(event)
                if stop.is_set():
                    return
        finally:
            stopping.cancel()
            if upcoming is not None and not upcoming.done():
                upcoming.cancel()
                await asyncio.gather(upcoming, return_exceptions=True)
            await events.aclose()

    async def _tick(self) -> None:
        """While the stream is quiet: retry what failed, check deadlines now and then."""
        loop_time = asyncio.get_running_loop().time()
        if self._retry:
            await self._reconcile(recover=False)
        elif loop_time - self._last_deadline_check >= DEADLINE_CHECK_S:
            await self._check_deadlines()

    async def _handle(self, event: NodeEvent) -> None:
        if event.kind == "gap":
            log.warning("the node no longer holds every event after %s: reconciling from the chain",
                        self.cursor.last_event_id)
            await self._reconcile(recover=False, history_after=self.cursor.height)
            return
        if event.kind == "dropped":
            raise StreamError("the node dropped this stream (the agent fell behind)")
        if event.kind == "order" and event.data.get("merchant") == self.key.address.hex():
            try:
                change = change_from_stream(event.data)
            except (KeyError, ValueError, TypeError):
                log.warning("ignored a malformed order event %s", event.id)
            else:
                order = await self._call(self.client.order, change.order_id)
                if is_mine(order, self.config, self.key.address):
                    self._enqueue(change.event_id, change.event_type, change.webhook_data(order))
                    await self._act(order)
        if event.id:
            self.cursor.advance(event.id)

    def _enqueue(self, event_id: str, event_type: str, data: dict[str, Any]) -> None:
        if self.outbox is not None:
            try:
                self.outbox.enqueue(event_id, event_type, data)
            except ValueError as error:  # an event too large for a webhook body: the agent goes on
                log.error("webhook %s (%s) not enqueued: %s", event_id, event_type, error)

    # --- reconciling from the chain ---------------------------------------------------------

    async def _reconcile(self, recover: bool, history_after: int | None = None) -> None:
        """Act on every open order (after settling reserved codes if `recover`); with
        `history_after`, hand the outbox every state change above that height."""
        self._retry = False
        if recover and self.inventory is not None:
            await self._recover()
        me = self.key.address
        if history_after is not None and self.outbox is not None:
            async for order in self._orders(None):
                if is_mine(order, self.config, me):
                    for change in changes_from_history(order, history_after):
                        self._enqueue(change.event_id, change.event_type, change.webhook_data(order))
        async for order in self._orders("placed"):
            if is_mine(order, self.config, me):
                await self._act(order)
        await self._check_deadlines(act=True)

    async def _orders(self, state: str | None) -> AsyncIterator[dict[str, Any]]:
        """The merchant's orders (in `state`, if given), newest first, one page in memory at a time."""
        cursor = None
        while True:
            listed = await self._call(functools.partial(self.client.orders, merchant=self.key.address, state=state,
                                                        limit=chain.PAGE_SIZE, cursor=cursor))
            for order in listed["orders"]:
                yield order
            cursor = listed.get("next")
            if not cursor:
                return

    async def _recover(self) -> None:
        """The chain decides each reservation left by the last run (kill -9 at any point)."""
        assert self.inventory is not None
        for order_hex in self.inventory.pending():
            order_id = bytes.fromhex(order_hex)
            order = await self._call(self.client.order, order_id)
            await self._settle(order_id, order)

    async def _settle(self, order_id: bytes, order: dict[str, Any]) -> None:
        """Codes reserved for `order_id`: used if the chain shows it delivered, free again if it
        ended without a delivery, kept (delivered again, the same codes) while it is open."""
        assert self.inventory is not None
        reservation = self.inventory.reservation(order_id)
        if reservation is None:
            return
        if order.get("delivery"):
            if reservation.status != "used":
                self.inventory.mark_used(order_id)
                log.info("order %s: delivered %d code(s) (seen on the chain)", order_id.hex(), len(reservation.codes))
        elif order.get("state") not in OPEN_STATES:
            self.inventory.release(order_id)
            log.info("order %s: %s without a delivery, %d code(s) free again", order_id.hex(), order.get("state"),
                     len(reservation.codes))

    # --- actions ----------------------------------------------------------------------------

    async def _act(self, order: dict[str, Any]) -> None:
        order_id = bytes.fromhex(order["id"])
        decision = decide(order, self.config)
        try:
            if decision.action == "accept":
                await self._accept(order_id)
            elif decision.action == "deliver":
                await self._deliver(order_id, order)
            elif decision.action == "leave" and order["id"] not in self._left:
                if len(self._left) >= MAX_LEFT_REMEMBERED:
                    self._left.clear()
                self._left.add(order["id"])
                log.info("order %s: left for a person (%s)", order["id"], decision.reason)
        except (ClientError, InventoryError) as error:
            self._retry = True
            log.warning("order %s: %s failed: %s; will retry", order["id"], decision.action, error)

    async def _send(self, tx_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        tx = await self._call(chain.submit, self.client, self.key, tx_type, payload, self.key_lock)
        return await self._call(chain.wait_final, self.client, tx)

    async def _accept(self, order_id: bytes) -> None:
        receipt = await self._send("order_accept", payloads.order_only(order_id))
        result = receipt["result"]
        if result["ok"]:
            log.info("order %s: accepted (tx %s)", order_id.hex(), receipt["hash"])
            status = await self._call(self.client.status)
            self._warn_if_due(await self._call(self.client.order, order_id), int(status.get("latest_block_time") or 0))
        else:
            log.info("order %s: accept failed: %s: %s", order_id.hex(), result["code"], result.get("message", ""))

    async def _reject(self, order_id: bytes, reason: str) -> None:
        receipt = await self._send("order_reject", payloads.order_with_reason(order_id, reason))
        result = receipt["result"]
        if result["ok"]:
            log.info("order %s: rejected, %s (tx %s)", order_id.hex(), reason, receipt["hash"])
        else:
            log.info("order %s: reject failed: %s: %s", order_id.hex(), result["code"], result.get("message", ""))
        if self.inventory is not None:
            await self._settle(order_id, await self._call(self.client.order, order_id))

    async def _deliver(self, order_id: bytes, order: dict[str, Any]) -> None:
        """Reserve → seal → `order_deliver` → final → mark used; each step durable before the next."""
        if self.inventory is None:
            return
        try:  # the buyer, listing and quantity the buyer signed, not the node's word (R8, R9)
            placement = await self._call(verify_order_placement, self.client, order_id, order)
            listing, quantity = placement.payload["listing_id"], int(placement.payload["quantity"])
            if listing.hex() != order["listing_id"] or listing not in self.config.digital_listings:
                raise VerificationFailed(f"the buyer ordered from listing {listing.hex()}, not {order['listing_id']}")
        except VerificationFailed as error:
            log.error("order %s: the node's answer does not match what the buyer signed: %s; left for a person",
                      order_id.hex(), error)
            return
        reservation = self.inventory.reservation(order_id)
        if reservation is None:
            reservation = self.inventory.reserve(listing, order_id, quantity)
            if reservation is None:
                await self._reject(order_id, OUT_OF_STOCK_REASON)
                return
            self.crash_points.reach("after_reserve")
        if reservation.status == "used":
            return
        if reservation.status == "submitted" and reservation.tx and await self._earlier_delivery_final(reservation.tx):
            order = await self._call(self.client.order, order_id)
            await self._settle(order_id, order)
            if order.get("state") not in OPEN_STATES:
                return
        content = delivery_text(self.inventory.code_texts(reservation.listing, reservation.codes))
        if len(content) > MAX_CONTENT_BYTES:
            await self._reject(order_id, OUT_OF_STOCK_REASON)
            return
        try:
            sealed = seal_content(placement.sender, content)
        except SealError as error:
            log.error("order %s: cannot seal the delivery to the buyer: %s; left for a person", order_id.hex(), error)
            return
        tx = await self._call(chain.submit, self.client, self.key, "order_deliver",
                              payloads.order_deliver(order_id, sealed), self.key_lock)
        self.inventory.mark_submitted(order_id, tx.hash.hex())
        self.crash_points.reach("after_submit")
        receipt = await self._call(chain.wait_final, self.client, tx)
        self.crash_points.reach("after_final")
        if receipt["result"]["ok"]:
            self.inventory.mark_used(order_id)
            log.info("order %s: delivered %d code(s) (tx %s)", order_id.hex(), len(reservation.codes), receipt["hash"])
        else:
            log.info("order %s: delivery failed: %s: %s", order_id.hex(), receipt["result"]["code"],
                     receipt["result"].get("message", ""))
            await self._settle(order_id, await self._call(self.client.order, order_id))

    async def _earlier_delivery_final(self, tx_hash: str) -> bool:
        """Wait for an `order_deliver` a previous run submitted, if the node still has it; False if unknown."""
        view = await self._call(chain.tx_status, self.client, tx_hash)
        if view is None:
            return False
        if view.get("status") != "committed":
            await self._call(self.client.wait_for_tx, tx_hash, chain.FINALITY_TIMEOUT_S)
        return True

    # --- deadlines --------------------------------------------------------------------------

    async def _check_deadlines(self, act: bool = False) -> None:
        """Warn about the accepted orders whose deadline is near; with `act` (a reconcile), act on
        each first, so that the accepted orders are listed once."""
        self._last_deadline_check = asyncio.get_running_loop().time()
        me = self.key.address
        status = await self._call(self.client.status)
        now = int(status.get("latest_block_time") or 0)
        async for order in self._orders("accepted"):
            if is_mine(order, self.config, me):
                if act:
                    await self._act(order)
                self._warn_if_due(order, now)

    def _warn_if_due(self, order: dict[str, Any], now: int) -> None:
        """One warning (log line and webhook) per deadline of an accepted parcel order that is near."""
        warning = self.warnings.due(order, now, self.config.warn_before_ms)
        if warning is not None:
            event_id, data = warning
            self._enqueue(event_id, "order.deadline_warning", data)
            self.warnings.given(event_id, int(order["deadline"]), now)
            log.warning("order %s: accepted and not shipped; its deadline %d is %d s away",
                        order["id"], order["deadline"], (int(order["deadline"]) - now) // 1000)
