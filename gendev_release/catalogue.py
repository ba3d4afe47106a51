"""The seed workflow as data: 8 phases, 16 agent steps, 4 verification items each.

Text is taken from ``seed/deployment-release-workflow.md``; ids are stable and used as task ids,
report keys and evidence file names, so they must never be renamed lightly.
"""

from __future__ import annotations

from dataclasses import dataclass

ITEM_KINDS: tuple[str, ...] = ("read", "verify", "check", "report")


@dataclass(frozen=True)
class Step:
    """One agent step: a GENDEV agent performing one duty within a phase."""

    id: str
    agent: str
    duty: str
    title: str
    items: tuple[str, str, str, str]
    moves_traffic: bool = False

    def item_ids(self) -> tuple[str, ...]:
        return tuple(f"{self.id}.{kind}" for kind in ITEM_KINDS)


@dataclass(frozen=True)
class Phase:
    id: str
    number: int
    title: str
    steps: tuple[Step, Step]
    deliverables: tuple[str, ...]


def _items(read: str, verify: str, check: str, report: str) -> tuple[str, str, str, str]:
    return (read, verify, check, report)


PHASES: tuple[Phase, ...] = (
    Phase(
        "p1_pre_deployment", 1, "Pre-Deployment Preparation",
        (
            Step("readiness", "deployment-ops-manager", "readiness", "Deployment readiness assessment",
                 _items("Read deployment readiness reports and infrastructure assessment documentation",
                        "Verify enterprise-level validation standards are applied throughout preparation",
                        "Check deployment environment status and resource availability confirmation",
                        "Report actual deployment readiness status and any blocking issues")),
            Step("risk_assessment", "risk-manager", "risk_assessment", "Deployment risk assessment",
                 _items("Read risk assessment reports and deployment risk analysis documentation",
                        "Verify standard validation processes are applied to risk evaluation",
                        "Check dependency validation results and backup strategy completeness",
                        "Report actual deployment risks and mitigation readiness status")),
        ),
        ("Deployment readiness", "Risk assessment", "Dependency validation", "Resource verification",
         "Backup strategy"),
    ),
    Phase(
        "p2_planning", 2, "Release Planning & Coordination",
        (
            Step("release_plan", "project-planner", "release_plan", "Release planning",
                 _items("Read the release plan documentation and deployment schedule files",
                        "Verify standard validation processes are applied to timeline and resource planning",
                        "Check timeline constraints are realistic and properly documented",
                        "Report actual release planning status and schedule feasibility")),
            Step("notifications", "stakeholder-communicator", "notifications", "Stakeholder notifications",
                 _items("Read stakeholder communication plans and notification documentation",
                        "Verify standard validation protocols are applied to communication strategies",
                        "Check approval gates and change windows are properly established",
                        "Report actual stakeholder communication readiness and approval status")),
        ),
        ("Release plan", "Deployment schedule", "Stakeholder notifications", "Change windows",
         "Approval gates"),
    ),
    Phase(
        "p3_build", 3, "Build & Package Management",
        (
            Step("build", "cicd-builder", "build", "Build and packaging",
                 _items("Read CI/CD pipeline configuration files and build artifact documentation",
                        "Verify build automation processes are properly configured and functional",
                        "Check build artifacts are generated correctly with proper versioning",
                        "Report actual CI/CD pipeline status and build artifact availability")),
            Step("dependencies", "dependency-manager", "dependencies", "Dependency validation",
                 _items("Read dependency analysis reports and security scan results",
                        "Verify standard validation processes are applied to dependency management",
                        "Check security scanning results show no critical vulnerabilities",
                        "Report actual dependency security status and package integrity")),
        ),
        ("Build artifacts", "Dependency validation", "Version tagging", "Security scanning",
         "Artifact repository"),
    ),
    Phase(
        "p4_environment", 4, "Environment Configuration",
        (
            Step("provisioning", "iac-automation-engineer", "provisioning", "Infrastructure provisioning",
                 _items("Read infrastructure configuration files and provisioning scripts",
                        "Verify IaC automation processes are properly configured and executable",
                        "Check infrastructure deployment status and resource provisioning completion",
                        "Report actual infrastructure readiness and configuration management status")),
            Step("hardening", "security-architect", "hardening", "Security hardening and compliance",
                 _items("Read security hardening reports and compliance validation documentation",
                        "Verify standard validation processes are applied to security configuration",
                        "Check compliance validation results and security hardening implementation",
                        "Report actual deployment environment security status and compliance level")),
        ),
        ("Infrastructure provisioning", "Configuration management", "Security hardening",
         "Compliance validation"),
    ),
    Phase(
        "p5_deployment", 5, "Deployment Execution",
        (
            Step("execute_strategy", "deployment-ops-manager", "execute_strategy", "Execute deployment strategy",
                 _items("Read blue-green deployment execution logs and status reports",
                        "Verify standard validation processes are applied throughout deployment execution",
                        "Check deployment health checks and validation gates are passing",
                        "Report actual deployment execution status and blue-green strategy effectiveness"),
                 moves_traffic=True),
            Step("monitoring_alerts", "resource-monitor", "monitoring_alerts", "Monitoring and alerting",
                 _items("Read monitoring configuration and alert setup documentation",
                        "Verify resource monitoring systems are active and collecting metrics",
                        "Check alert thresholds and notification systems are properly configured",
                        "Report actual monitoring system status and resource tracking effectiveness")),
        ),
        ("Blue-green deployment", "Progressive rollout", "Health checks", "Monitoring alerts",
         "Validation gates"),
    ),
    Phase(
        "p6_testing", 6, "Testing & Validation",
        (
            Step("smoke_tests", "test-suite-generator", "smoke_tests", "Smoke tests",
                 _items("Read smoke test suite files and test execution results",
                        "Verify standard validation processes are applied to smoke test generation",
                        "Check smoke tests cover critical functionality and pass successfully",
                        "Report actual smoke test results and critical functionality validation status")),
            Step("qa", "qa-coordinator", "qa", "Quality assurance",
                 _items("Read QA validation reports and user acceptance test results",
                        "Verify standard validation processes are applied throughout QA coordination",
                        "Check integration validation and performance benchmarks meet requirements",
                        "Report actual QA validation status and user acceptance test outcomes")),
        ),
        ("Smoke tests", "Integration validation", "Performance benchmarks", "User acceptance",
         "Security verification"),
    ),
    Phase(
        "p7_monitoring", 7, "Monitoring & Observability",
        (
            Step("observability", "resource-monitor", "observability", "Observability",
                 _items("Read monitoring dashboard configurations and real-time metric collection setup",
                        "Verify monitoring systems are actively collecting and displaying performance data",
                        "Check anomaly detection and SLA tracking systems are operational",
                        "Report actual monitoring system effectiveness and data collection status")),
            Step("performance", "performance-optimizer", "performance", "Performance analysis",
                 _items("Read performance analysis reports and optimization recommendations",
                        "Verify standard validation processes are applied to performance assessment",
                        "Check performance metrics meet SLA requirements and optimization targets",
                        "Report actual system performance status and optimization effectiveness")),
        ),
        ("Real-time monitoring", "Performance dashboards", "Anomaly detection", "SLA tracking",
         "Alert configuration"),
    ),
    Phase(
        "p8_post_deployment", 8, "Post-Deployment Activities",
        (
            Step("release_notes", "documentation-generator", "release_notes", "Release notes",
                 _items("Read generated release notes and deployment documentation files",
                        "Verify standard validation processes are applied to documentation creation",
                        "Check release notes effectively communicate changes to mixed audiences",
                        "Report actual documentation quality and release communication effectiveness")),
            Step("training", "training-change-manager", "training", "Training and change management",
                 _items("Read training materials and knowledge base update documentation",
                        "Verify standard validation processes are applied to training content development",
                        "Check new feature training scope is comprehensive and user-focused",
                        "Report actual training material quality and change management readiness")),
        ),
        ("Release notes", "Deployment documentation", "Training materials", "Knowledge base updates",
         "Lessons learned"),
    ),
)

#: The 14 distinct GENDEV agents, in order of first appearance.
AGENTS: tuple[str, ...] = tuple(dict.fromkeys(s.agent for p in PHASES for s in p.steps))

#: Seed's deployment checklist, derived from reports at the end of a run.
DEPLOYMENT_CHECKLIST: tuple[str, ...] = (
    "Risk assessment complete", "Stakeholders notified", "Backup created", "Dependencies validated",
    "Build artifacts ready", "Security scan passed", "Infrastructure provisioned",
    "Configuration validated", "Deployment executed", "Health checks passing", "Smoke tests passed",
    "Performance validated", "Monitoring active", "Alerts configured", "Documentation updated",
    "Team briefed", "Rollback tested", "Success metrics met",
)


def all_steps() -> list[tuple[Phase, Step]]:
    return [(phase, step) for phase in PHASES for step in phase.steps]


def step_by_id(step_id: str) -> tuple[Phase, Step]:
    for phase, step in all_steps():
        if step.id == step_id:
            return phase, step
    raise KeyError(f"unknown step {step_id!r}; known: {', '.join(s.id for _, s in all_steps())}")


def traffic_step_index() -> int:
    """Index (in :func:`all_steps` order) of the first step that moves traffic."""
    for index, (_, step) in enumerate(all_steps()):
        if step.moves_traffic:
            return index
    raise AssertionError("catalogue has no traffic-moving step")


def deliverable_gaps(manifest: list[dict[str, object]]) -> list[str]:
    """The seed's phase deliverables missing from an evidence store's manifest, as ``"phase N: name"``.

    A deliverable counts when a step of its own phase stored it under the catalogue's exact name
    (the current copy: ``current`` not false). An empty list means every one of the 39 is there.
    """
    stored = {(str(line.get("step")), str(line.get("name"))) for line in manifest if line.get("current", True)}
    gaps = []
    for phase in PHASES:
        step_ids = {step.id for step in phase.steps}
        for name in phase.deliverables:
            if not any((step_id, name) in stored for step_id in step_ids):
                gaps.append(f"phase {phase.number}: {name}")
    return gaps
