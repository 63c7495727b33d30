"""Simulated machines and lines served over OPC-UA and MQTT, with their ground truth.

Imports nothing from linemon, collector, rules or api: it speaks the protocols only.

    scenario = load_scenario("simulators/scenarios/demo.yaml")
    plant = SimulatedPlant(scenario, speed=60, opcua_port=0, mqtt_host="127.0.0.1")
    await plant.start()
    ...
    await plant.stop()
"""

from simulators.opcua.security import ClientCertificate, OpcUaSecurity, generate_client_certificate
from simulators.plant import SimulatedPlant
from simulators.scenario import Scenario, ScenarioError, load_scenario
from simulators.signals import SIGNALS, StateCode
from simulators.simulation import Simulation
from simulators.timeline import TimelineError

__all__ = [
    "SIGNALS",
    "ClientCertificate",
    "OpcUaSecurity",
    "Scenario",
    "ScenarioError",
    "SimulatedPlant",
    "Simulation",
    "StateCode",
    "TimelineError",
    "generate_client_certificate",
    "load_scenario",
]
