"""Which pending replicas fit no node, and how the deploy explains it
(runtime/unplaced.py; the cluster test deploys one: tests/cluster/test_ray_cli.py)."""

from __future__ import annotations

from runtime.unplaced import Node, Pending

HEAD = Node("10.0.0.1", {"CPU": 0.0, "memory": 8e9, "node:10.0.0.1": 1.0}, {})
CPU = Node("10.0.0.2", {"CPU": 6.0, "memory": 8e9}, {"worker-kind": "cpu", "ray.io/node-id": "x"})
GPU = Node("10.0.0.3", {"CPU": 6.0, "GPU": 8.0}, {"worker-kind": "gpu"})


def test_a_replica_fits_a_node_with_its_resources_and_labels() -> None:
    agent = Pending("agents", "AgentServer", {"CPU": 0.5}, {"worker-kind": "cpu"})
    assert agent.fits(CPU) and not agent.fits(GPU) and not agent.fits(HEAD)
    anywhere = Pending("gateway", "Gateway", {"CPU": 0.5}, {})
    assert anywhere.fits(CPU) and anywhere.fits(GPU) and not anywhere.fits(HEAD)
    big = Pending("llm", "LLMServer", {"CPU": 1.0, "GPU": 9.0}, {})
    assert not any(big.fits(n) for n in (HEAD, CPU, GPU))


def test_label_selector_operators() -> None:
    def fits(selector: dict[str, str], node: Node) -> bool:
        return Pending("a", "D", {}, selector).fits(node)

    assert fits({"worker-kind": "!gpu"}, CPU) and not fits({"worker-kind": "!gpu"}, GPU)
    assert fits({"worker-kind": "in(cpu, gpu)"}, GPU) and not fits({"worker-kind": "in(tpu)"}, GPU)
    assert fits({"worker-kind": "!in(tpu)"}, HEAD)  # no such label: not in the set
    assert not fits({"worker-kind": "cpu"}, HEAD)


def test_the_explanation_names_the_deployment_its_ask_and_the_nodes() -> None:
    agent = Pending("agents", "AgentServer", {"CPU": 0.5}, {"worker-kind": "cpu"})
    text = agent.explain([HEAD, GPU])
    assert text.startswith(
        "deployment 'AgentServer' of application 'agents' asks for CPU 0.5 on a node "
        "labelled {'worker-kind': 'cpu'}, and no live node offers that."
    )
    assert "10.0.0.1 (CPU 0; labels {})" in text  # memory and node: resources left out
    assert "10.0.0.3 (CPU 6, GPU 8; labels {'worker-kind': 'gpu'})" in text
    assert "ray.io/" not in CPU.describe()
