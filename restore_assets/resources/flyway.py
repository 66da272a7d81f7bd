"""Who runs Flyway in a Dagster run: the runbook core decides (native, cli or docker); for
`docker` this resource hands it a function that runs the official image through Dagster's
PipesDockerClient, so the container's status shows up in the run.

The container's output goes where the cli runner's goes, and nowhere else: back to the core,
redacted (`ExternalCommand.redact`), which keeps it in the evidence (the store redacts again)
and says a failure from Flyway's structured fields only (`cli_failure`). Pipes' own reader
would print every line to the step's stdout, which Dagster stores as the run's compute log:
Flyway's text can quote a row a migration failed on, or a password."""

from dagster import ConfigurableResource, ResourceDependency

from restore_assets.resources.config import RestoreConfig
from restore_assets.runbook.flyway_adapter import ContainerRunner, ExternalCommand, cli_failure


def kept_logs_reader():
    """A Pipes reader for the Docker client that keeps the container's output (`.output`)
    instead of forwarding it to stdout. Flyway speaks no Pipes: there are no messages to
    extract from its lines."""
    from dagster_docker import PipesDockerLogsMessageReader

    class KeptLogs(PipesDockerLogsMessageReader):
        output = ""

        def consume_docker_logs(self, container) -> None:
            logs = container.logs(stdout=True, stderr=True, stream=True, follow=True)
            self.output = b"".join(logs).decode("utf-8", "replace")

    return KeptLogs()


class FlywayResource(ConfigurableResource):
    config: ResourceDependency[RestoreConfig]

    def container_runner(self, context) -> ContainerRunner:
        redact = self.config.settings().redactor

        def run(spec: ExternalCommand) -> str:
            # Imported only when a container runs: dagster_docker and the docker SDK cost every
            # other run (and the UI's code server) about 0.4 s of start-up.
            from dagster_docker import PipesDockerClient
            from dagster_pipes import DagsterPipesError

            reader = kept_logs_reader()
            try:
                PipesDockerClient(message_reader=reader).run(
                    context=context,
                    image=spec.image,
                    command=spec.argv,
                    env=spec.env,
                    container_kwargs={"volumes": spec.volumes, "network_mode": "host"},
                )
            except DagsterPipesError as exc:  # "Container exited with non-zero status code"
                output = redact(spec.redact(reader.output))
                raise cli_failure(
                    f"flyway {spec.argv[-1]} in {spec.image}: {exc}", output
                ) from None
            return redact(spec.redact(reader.output))

        return run
