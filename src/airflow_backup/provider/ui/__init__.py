"""The Backups page: an Airflow 3 plugin (FastAPI app in the api-server, a "Backups" entry in
the navigation) showing every job's state, snapshots, drills and repositories, with buttons
that trigger the job's DAGs. Data comes from the operations layer
(:mod:`airflow_backup.operations.overview`); access follows Airflow's own auth manager."""
