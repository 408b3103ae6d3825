"""Subject-hierarchy placement: outputs go beside (same parent as) the moving volume."""
from __future__ import annotations


def _item(hierarchy, node, parent: int) -> int:
    item = hierarchy.GetItemByDataNode(node)
    if not item:  # the Slicer application creates items on node addition; plain MRML does not
        item = hierarchy.CreateItem(parent, node)
    return item


def place_beside(nodes, anchor) -> None:
    """Put every node of `nodes` under the subject-hierarchy parent of `anchor`."""
    scene = anchor.GetScene()
    hierarchy = scene.GetSubjectHierarchyNode()
    if hierarchy is None:
        return
    anchor_item = hierarchy.GetItemByDataNode(anchor)
    parent = hierarchy.GetItemParent(anchor_item) if anchor_item else hierarchy.GetSceneItemID()
    for node in nodes:
        if node is not None:
            hierarchy.SetItemParent(_item(hierarchy, node, parent), parent)

