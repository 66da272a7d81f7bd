"""Who runs Flyway in a Dagster run: the runbook core decides (native, cli or docker); for
`docker` this resource hands it a function that runs the official image through Dagster's
PipesDockerClient, so the container's logs and status show up in the run."""

from dagster import ConfigurableResource, ResourceDependency

from restore_assets.resources.config import RestoreConfig
from restore_assets.runbook.flyway_adapter import ContainerRunner, ExternalCommand


class FlywayResource(ConfigurableResource):
    config: ResourceDependency[RestoreConfig]

    def container_runner(self, context) -> ContainerRunner:
        def run(spec: ExternalCommand) -> str:
            # Imported only when a container runs: dagster_docker and the docker SDK cost every
            # other run (and the UI's code server) about 0.4 s of start-up.
            from dagster_docker import PipesDockerClient

            PipesDockerClient().run(
                context=context,
                image=spec.image,
                command=spec.argv,
                env=spec.env,
                container_kwargs={"volumes": spec.volumes, "network_mode": "host"},
            )
            return f"docker run {spec.image} {' '.join(spec.argv)}: finished"

        return run
