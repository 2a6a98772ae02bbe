"""What an AWS cluster costs per hour, before `hpcrun create` makes it.

A GPU cluster left at its maximum size costs tens of dollars an hour, so `create` shows
the bill's shape first: the head node (ParallelCluster) or the EKS control plane, the
compute nodes at their minimum and maximum count, and the totals. Prices come from a dated
table of AWS on-demand list prices kept in the package (prices.json), not from AWS's
pricing API: the estimate needs no credentials and no network, and it can be shown and
tested offline. A type or region the table lacks is said to be unknown ("no price known
for X in R"), never guessed, and the totals then say "at least".

Pure: reads the table, takes a validated cluster model, returns data and text lines; the
CLI prints them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcrun.config.eks.model import EksClusterConfig
from hpcrun.config.pcluster.model import ParallelClusterConfig

PRICES = Path(__file__).parent / "prices.json"
BASIS = "AWS on-demand list price, Linux"
EXTRAS = "Not included: EBS volumes, data transfer, NAT gateways, load balancers."


@dataclass(frozen=True)
class PriceTable:
    """The dated list prices: per region, each instance type's and the EKS fee's USD/h."""

    date: str
    source: str
    note: str
    ec2: dict[str, dict[str, float]]  # region -> instance type -> USD per hour
    eks_control_plane: dict[str, float]  # region -> USD per hour per cluster

    def instance(self, region: str, instance_type: str) -> float | None:
        return self.ec2.get(region, {}).get(instance_type)


def load_price_table(path: Path = PRICES) -> PriceTable:
    """The table in `path` (default: the one shipped with hpcrun)."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    regions: dict[str, dict[str, Any]] = data["regions"]
    return PriceTable(
        date=str(data["date"]),
        source=str(data["source"]),
        note=str(data.get("note", "")),
        ec2={r: {t: float(p) for t, p in v.get("ec2", {}).items()} for r, v in regions.items()},
        eks_control_plane={
            r: float(v["eks_control_plane"]) for r, v in regions.items() if "eks_control_plane" in v
        },
    )


@dataclass(frozen=True)
class CostLine:
    """One kind of thing billed by the hour: `min_count` to `max_count` of it at
    `each_per_hour` (None: the table has no price for it)."""

    what: str  # "head node", "compute (gpu)", "node group gpu", "EKS control plane"
    item: str  # what is priced: an instance type, or the control plane itself
    region: str
    min_count: int
    max_count: int
    each_per_hour: float | None
    scales: bool = False  # compute nodes: the totals' "with N nodes" counts these
    spot: bool = False  # Spot capacity: pays the Spot price, which EKS caps at on-demand

    @property
    def per_hour_min(self) -> float | None:
        return None if self.each_per_hour is None else _usd(self.each_per_hour * self.min_count)

    @property
    def per_hour_max(self) -> float | None:
        return None if self.each_per_hour is None else _usd(self.each_per_hour * self.max_count)

    @property
    def missing(self) -> str | None:
        """ "no price known for X in R" when the table lacks this line's price."""
        if self.each_per_hour is not None:
            return None
        return f"no price known for {self.item} in {self.region}"

    def to_json(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "item": self.item,
            "min_count": self.min_count,
            "max_count": self.max_count,
            "per_hour_each": self.each_per_hour,
            "per_hour_min": self.per_hour_min,
            "per_hour_max": self.per_hour_max,
            "spot": self.spot,
            "missing": self.missing,
        }


@dataclass(frozen=True)
class CostEstimate:
    """A cluster's hourly cost at its smallest and its largest, from the price table."""

    cluster: str
    region: str
    date: str
    source: str
    lines: tuple[CostLine, ...]
    # The totals' node counts, for the text: ParallelCluster and EKS name them differently.
    node_noun: str = "compute node"

    @property
    def complete(self) -> bool:
        return all(line.each_per_hour is not None for line in self.lines)

    @property
    def missing(self) -> list[str]:
        return [line.missing for line in self.lines if line.missing]

    @property
    def per_hour_min(self) -> float:
        """The priced lines at their minimum (a lower bound when not `complete`)."""
        return _usd(sum(line.per_hour_min or 0.0 for line in self.lines))

    @property
    def per_hour_max(self) -> float:
        return _usd(sum(line.per_hour_max or 0.0 for line in self.lines))

    def _nodes(self, which: str) -> int:
        return sum(getattr(line, which) for line in self.lines if line.scales)

    def to_json(self) -> dict[str, Any]:
        return {
            "basis": BASIS,
            "currency": "USD",
            "date": self.date,
            "source": self.source,
            "region": self.region,
            "lines": [line.to_json() for line in self.lines],
            "per_hour_min": self.per_hour_min,
            "per_hour_max": self.per_hour_max,
            "complete": self.complete,
            "missing": self.missing,
        }

    def text_lines(self) -> list[str]:
        """The estimate as a person reads it before saying yes: one line per billed kind,
        then the totals, then what the estimate leaves out."""
        rows: list[tuple[str, str, str]] = []
        for line in self.lines:
            counts = (
                str(line.min_count)
                if line.min_count == line.max_count
                else f"{line.min_count}-{line.max_count}"
            )
            shape = "" if line.item == line.what else f"{counts} x {line.item}"
            if line.each_per_hour is None:
                cost = str(line.missing)
            elif line.min_count == line.max_count:
                cost = f"{_money(line.per_hour_max)}/h"
            else:
                cost = (
                    f"{_money(line.per_hour_min)}/h to {_money(line.per_hour_max)}/h "
                    f"({_money(line.each_per_hour)}/h each)"
                )
            if line.spot and line.each_per_hour is not None:
                cost += " (Spot: at most this)"
            rows.append((line.what, shape, cost))
        floor = "" if self.complete else "at least "
        low, high = self._nodes("min_count"), self._nodes("max_count")
        rows.append(
            (
                "total",
                "",
                f"{floor}{_money(self.per_hour_min)}/h with {_count(low, self.node_noun)}, "
                f"{floor}{_money(self.per_hour_max)}/h with {_count(high, self.node_noun)}",
            )
        )
        what_w = max(len(r[0]) for r in rows)
        shape_w = max(len(r[1]) for r in rows)
        return [
            f"Estimated cost of {self.cluster} per hour: {BASIS}, {self.region}, "
            f"as of {self.date} (prices may have changed since)",
            *(f"  {w:<{what_w}}  {sh:<{shape_w}}  {c}" for w, sh, c in rows),
            f"  {EXTRAS}",
        ]

    def running_text(self) -> str:
        """One line for `hpcrun status`: what the cluster costs now, from what is up."""
        parts = [
            f"{_count(line.max_count, self.node_noun)} {line.item}"
            if line.scales
            else (line.what if line.item == line.what else f"{line.what} {line.item}")
            for line in self.lines
        ]
        floor = "" if self.complete else "at least "
        missing = "".join(f"; {m}" for m in self.missing)
        return (
            f"Cost now: {floor}{_money(self.per_hour_max)}/h ({', '.join(parts)} up{missing}; "
            f"{BASIS}, as of {self.date})"
        )


def estimate_cost(config: object, table: PriceTable | None = None) -> CostEstimate | None:
    """The hourly estimate of a validated cluster model; None for clusters hpcrun does
    not pay AWS for (local, ssh, an existing Kubernetes cluster)."""
    prices = table or load_price_table()
    if isinstance(config, ParallelClusterConfig):
        return _pcluster(config, prices, None)
    if isinstance(config, EksClusterConfig):
        return _eks(config, prices)
    return None


def running_cost(
    config: ParallelClusterConfig, nodes_up: Sequence[str], table: PriceTable | None = None
) -> CostEstimate:
    """What a ParallelCluster cluster costs now: its head node and the compute nodes that
    are up (`hpcrun status` passes the Slurm names of those not powered down), each
    priced as its queue's compute resource."""
    return _pcluster(config, table or load_price_table(), _count_by_resource(config, nodes_up))


# ParallelCluster names each Slurm node QUEUE-st|dy-COMPUTE_RESOURCE-N (static/dynamic).
_NODE_NAME_RE = re.compile(
    r"^(?P<queue>[a-z][a-z0-9-]*?)-(st|dy)-(?P<resource>[a-z][a-z0-9-]*)-\d+$"
)
UNKNOWN = ("", "")


def _count_by_resource(
    config: ParallelClusterConfig, names: Sequence[str]
) -> dict[tuple[str, str], int]:
    """Nodes up per (queue, compute resource); a name that says neither counts for the
    one compute resource of a one-type cluster, else as UNKNOWN."""
    known = {(q.name, r.resolved_name) for q in config.slurm_queues() for r in q.compute_resources}
    only = next(iter(known)) if len(known) == 1 else None
    counts: dict[tuple[str, str], int] = {}
    for name in names:
        found = _NODE_NAME_RE.match(name)
        key = (found.group("queue"), found.group("resource")) if found else UNKNOWN
        if key not in known:
            key = only or UNKNOWN
        counts[key] = counts.get(key, 0) + 1
    return counts


def _pcluster(
    config: ParallelClusterConfig,
    prices: PriceTable,
    up: dict[tuple[str, str], int] | None,
) -> CostEstimate:
    """Head node, then one line per compute resource: at its min and max count, or (with
    `up`) at the count up now."""
    region, head = config.region, config.head_node_instance_type
    lines = [CostLine("head node", head, region, 1, 1, prices.instance(region, head))]
    for queue in config.slurm_queues():
        for resource in queue.compute_resources:
            low, high = resource.min_count, resource.max_count
            if up is not None:
                low = high = up.get((queue.name, resource.resolved_name), 0)
            several = len(queue.compute_resources) > 1
            lines.append(
                CostLine(
                    f"compute ({queue.name}/{resource.resolved_name})"
                    if several
                    else f"compute ({queue.name})",
                    resource.instance_type,
                    region,
                    low,
                    high,
                    prices.instance(region, resource.instance_type),
                    scales=True,
                    spot=queue.spot,
                )
            )
    strays = (up or {}).get(UNKNOWN, 0)
    if strays:
        lines.append(
            CostLine(
                "compute (unknown queue)",
                "node outside the file's queues",
                region,
                strays,
                strays,
                None,
                scales=True,
            )
        )
    return CostEstimate(config.name, region, prices.date, prices.source, tuple(lines))


def _eks(config: EksClusterConfig, prices: PriceTable) -> CostEstimate:
    region = config.region
    lines = [
        CostLine(
            "EKS control plane",
            "EKS control plane",
            region,
            1,
            1,
            prices.eks_control_plane.get(region),
        )
    ]
    lines += [
        CostLine(
            f"node group {group.name}",
            group.instance_type,
            region,
            group.min_size,
            group.max_size,
            prices.instance(region, group.instance_type),
            scales=True,
            spot=group.spot,
        )
        for group in config.node_groups
    ]
    return CostEstimate(
        config.name, region, prices.date, prices.source, tuple(lines), node_noun="node"
    )


def _usd(value: float) -> float:
    # Sums of list prices to a tenth of a cent: 0.1 + 0.526 is 0.626, not 0.6260000000000001.
    return round(value, 4)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _money(value: float | None) -> str:
    return "?" if value is None else f"${value:,.3f}"
