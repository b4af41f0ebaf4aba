"""V8.1.1: the permission matrix operators read in docs/security.md is the one the code
enforces (``ROLE_PERMISSIONS``), cell for cell."""

from __future__ import annotations

from pathlib import Path

from plexus.authz.permissions import INSTANCE_PERMISSIONS, ROLE_PERMISSIONS, Permission, Role

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
SECTION = "## Workspaces, roles and invitations"


def documented_matrix() -> dict[Role, set[str]]:
    text = DOC.read_text(encoding="utf-8")
    assert SECTION in text
    lines = text.split(SECTION, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Permission |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    roles = [Role(name) for name in header[1:]]
    granted: dict[Role, set[str]] = {role: set() for role in roles}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        permission = cells[0].strip("`")
        for role, cell in zip(roles, cells[1:], strict=True):
            assert cell in ("", "✓"), line
            if cell:
                granted[role].add(permission)
    return granted


def test_the_documented_role_matrix_is_role_permissions():
    documented = documented_matrix()
    assert set(documented) == set(Role)
    for role, permissions in ROLE_PERMISSIONS.items():
        assert documented[role] == {str(p) for p in permissions}, role


def test_the_matrix_names_every_workspace_permission():
    text = DOC.read_text(encoding="utf-8").split(SECTION, 1)[1]
    for permission in Permission:
        if permission not in INSTANCE_PERMISSIONS:
            assert f"| `{permission}` |" in text, permission
