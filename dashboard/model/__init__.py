"""The dashboard's pure core: no I/O, no asyncio.

records (the stored documents and their JSON) <- states (every state name, once)
<- changes (topology changes and request validation) <- migration (the per-slot state
machine) ; rebalance (the planners). Refusals are `dashboard.errors.RequestRefused`.
"""
