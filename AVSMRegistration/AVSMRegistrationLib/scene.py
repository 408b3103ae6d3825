"""All-or-nothing changes to a MRML scene: on any error every node added since the start is removed."""
from __future__ import annotations


def node_ids(scene) -> list[str]:
    return [scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())]


class SceneTransaction:
    """Context manager: nodes added inside it stay only if the block finishes without an error."""

    def __init__(self, scene):
        self.scene = scene
        self._before: set[str] = set()

    def __enter__(self) -> "SceneTransaction":
        self._before = set(node_ids(self.scene))
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if kind is not None:
            self.rollback()
        return False

    def rollback(self) -> None:
        added = [node_id for node_id in node_ids(self.scene) if node_id not in self._before]
        for node_id in reversed(added):  # display and storage nodes were added after their owners
            node = self.scene.GetNodeByID(node_id)
            if node is not None:
                self.scene.RemoveNode(node)
