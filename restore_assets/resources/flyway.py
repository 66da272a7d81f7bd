"""Who runs Flyway in a Dagster run: the runbook core decides (native, cli or docker); for
`docker` this resource hands it a function that runs the official image through the
PipesDockerClient passed in, so the container's logs and status show up in the run."""

from dagster import ConfigurableResource, ResourceDependency
from dagster_docker import PipesDockerClient

from restore_assets.flyway.runners import ContainerRunner, ExternalCommand
from restore_assets.resources.config import RestoreConfig


class FlywayResource(ConfigurableResource):
    config: ResourceDependency[RestoreConfig]
    docker: ResourceDependency[PipesDockerClient]

    def container_runner(self, context) -> ContainerRunner:
        def run(spec: ExternalCommand) -> str:
            self.docker.run(
                context=context,
                image=spec.image,
                command=spec.argv,
                env=spec.env,
                container_kwargs={"volumes": spec.volumes, "network_mode": "host"},
            )
            return f"docker run {spec.image} {' '.join(spec.argv)}: finished"

        return run
