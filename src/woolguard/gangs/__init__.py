"""Gang (团伙) detection: the account × attribute graph, its detectors and the gang table.

Adapter entry points: :func:`build_graph` / :func:`graph_from_frame` then :func:`detect_gangs`;
learned-model features: :func:`node_features`.
"""

from woolguard.gangs.campaign import (
    CampaignGangs,
    campaign_graph,
    detect_buffer,
    detect_campaign_gangs,
    detect_on_graph,
)
from woolguard.gangs.communities import Communities, community_cohesion, detect_communities, louvain_labels
from woolguard.gangs.dense import DenseBlock, camouflage_weights, dense_blocks, peel
from woolguard.gangs.detect import GangReport, detect_gangs
from woolguard.gangs.features import NodeFeatures, node_features, symmetric_adjacency
from woolguard.gangs.graph import AttributeGraph, build_graph, graph_from_frame, project
from woolguard.gangs.invites import InviteFarm, invite_farms
from woolguard.gangs.links import LinkBuffer, burst_links, event_links
from woolguard.gangs.table import Gang, TimelineEntry, account_gang_features, gang_from_rows

__all__ = [
    "AttributeGraph",
    "CampaignGangs",
    "Communities",
    "DenseBlock",
    "Gang",
    "GangReport",
    "InviteFarm",
    "LinkBuffer",
    "NodeFeatures",
    "TimelineEntry",
    "account_gang_features",
    "build_graph",
    "burst_links",
    "camouflage_weights",
    "campaign_graph",
    "community_cohesion",
    "dense_blocks",
    "detect_buffer",
    "detect_campaign_gangs",
    "detect_communities",
    "detect_gangs",
    "detect_on_graph",
    "event_links",
    "gang_from_rows",
    "graph_from_frame",
    "invite_farms",
    "louvain_labels",
    "node_features",
    "peel",
    "project",
    "symmetric_adjacency",
]
