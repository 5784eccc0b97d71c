"""Kibana content for the pipeline: saved objects (data views, searches, dashboards) and their import."""
