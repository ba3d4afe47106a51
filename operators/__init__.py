"""One operator per GENDEV agent, plus the release control operators."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator
from gendev_release.operators.cicd_builder import CICDBuilderOperator
from gendev_release.operators.dependency_manager import DependencyManagerOperator
from gendev_release.operators.deployment_ops_manager import DeploymentOpsManagerOperator
from gendev_release.operators.documentation_generator import DocumentationGeneratorOperator
from gendev_release.operators.iac_automation_engineer import IaCAutomationEngineerOperator
from gendev_release.operators.performance_optimizer import PerformanceOptimizerOperator
from gendev_release.operators.project_planner import ProjectPlannerOperator
from gendev_release.operators.qa_coordinator import QACoordinatorOperator
from gendev_release.operators.resource_monitor import ResourceMonitorOperator
from gendev_release.operators.risk_manager import RiskManagerOperator
from gendev_release.operators.security_architect import SecurityArchitectOperator
from gendev_release.operators.stakeholder_communicator import StakeholderCommunicatorOperator
from gendev_release.operators.test_suite_generator import TestSuiteGeneratorOperator
from gendev_release.operators.training_change_manager import TrainingChangeManagerOperator

#: agent name (as in the seed) -> operator class
AGENT_OPERATORS: dict[str, type[GendevAgentOperator]] = {
    DeploymentOpsManagerOperator.agent: DeploymentOpsManagerOperator,
    RiskManagerOperator.agent: RiskManagerOperator,
    ProjectPlannerOperator.agent: ProjectPlannerOperator,
    StakeholderCommunicatorOperator.agent: StakeholderCommunicatorOperator,
    CICDBuilderOperator.agent: CICDBuilderOperator,
    DependencyManagerOperator.agent: DependencyManagerOperator,
    IaCAutomationEngineerOperator.agent: IaCAutomationEngineerOperator,
    SecurityArchitectOperator.agent: SecurityArchitectOperator,
    ResourceMonitorOperator.agent: ResourceMonitorOperator,
    TestSuiteGeneratorOperator.agent: TestSuiteGeneratorOperator,
    QACoordinatorOperator.agent: QACoordinatorOperator,
    PerformanceOptimizerOperator.agent: PerformanceOptimizerOperator,
    DocumentationGeneratorOperator.agent: DocumentationGeneratorOperator,
    TrainingChangeManagerOperator.agent: TrainingChangeManagerOperator,
}

__all__ = [
    "AGENT_OPERATORS",
    "GendevAgentOperator",
    "DeploymentOpsManagerOperator",
    "RiskManagerOperator",
    "ProjectPlannerOperator",
    "StakeholderCommunicatorOperator",
    "CICDBuilderOperator",
    "DependencyManagerOperator",
    "IaCAutomationEngineerOperator",
    "SecurityArchitectOperator",
    "ResourceMonitorOperator",
    "TestSuiteGeneratorOperator",
    "QACoordinatorOperator",
    "PerformanceOptimizerOperator",
    "DocumentationGeneratorOperator",
    "TrainingChangeManagerOperator",
]
