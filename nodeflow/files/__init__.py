"""Image files: listing folders, decoding one file, encoding one file, the graph an image
carries, and the policy every node that writes files follows.

Nothing here imports torch: decoding gives numpy arrays in the file's own dtype, and the
nodes in `nodeflow.nodes.io` turn them into tensors.
"""
