from django.db import models


class Member(models.Model):
    email = models.EmailField(unique=True)
    welcomed_at = models.DateTimeField(null=True)
