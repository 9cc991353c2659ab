"""Random-access data sources seen through another: what the data-set modules and datasets.py
share (a module of its own, so that neither imports the other)."""


class MappedSource:
    """Random access to `fn(source[i])`: another data source seen through a conversion."""

    def __init__(self, source, fn):
        self.source, self.fn = source, fn

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        return self.fn(self.source[i])
