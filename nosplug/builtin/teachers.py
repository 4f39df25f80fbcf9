"""Built-in plugin: the amalgamation paper's analytical teachers (spec §2.2, §2.3)."""

from __future__ import annotations

from nosplug.amalgamation.teachers import TeacherSpec, builtin_teachers
from nosplug.hookspecs import hookimpl


@hookimpl
def nosplug_teachers() -> list[TeacherSpec]:
    return builtin_teachers()
