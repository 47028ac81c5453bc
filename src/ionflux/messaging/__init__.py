"""MessagingService: WhatsApp (Meta Cloud API) first; the channel seam leaves room for SMS or Messenger.

Public surface for other services: `ionflux.messaging.interface` (reach it as `platform.services["messaging"]`).
"""
