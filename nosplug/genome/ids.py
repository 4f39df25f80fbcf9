"""Reserved node ids of genome graphs, shared by the model and everything that walks it."""

#: The update graph's output node.
ROOT = "out"
#: A decay graph's hidden node.
HIDDEN = "hidden"
